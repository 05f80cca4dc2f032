"""Text to token ids as the upstream's preprocessing makes them (no special tokens added).

A fast tokenizer's Rust tokenizer is called directly, through `encode_batch_fast` (tokenizers >= 0.21), which
also skips the character offsets that ids never need: the same ids without transformers' Python layer around
them, a third less time for a 232-token prompt and 13-15 % less app CPU per direct-mode request (bench.app_cost
--upstream direct). A tokenizer without one (a slow tokenizer) is called through its own `encode`.

One request's prompt may be asked for by several parts: its key's token limits (a count), prefix-affinity
routing (ids, in a thread), direct mode's upstream request (ids) and its usage when the engine does not report
the prompt's tokens (a count). `TextEncoder.of(tokenizer)` is the one encoder of a tokenizer, and it keeps the
ids of the texts it encoded last, so the prompt is tokenized once (a microsecond per token) however many ask.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

RECENT_TEXTS = 64  # texts whose ids are kept: more than the requests admitted between one's admission and its call
RECENT_TOKENS = 262_144  # ids kept at most (~9 MB as Python ints); a longer text is not kept at all

_ENCODERS: weakref.WeakKeyDictionary[Any, TextEncoder] = weakref.WeakKeyDictionary()
_ENCODERS_LOCK = threading.Lock()


class TextEncoder:
    """Token ids and counts of texts, for one tokenizer; the ids of the texts it encoded last are kept."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._fast = getattr(backend, "encode_batch_fast", None)
        self._backend = backend
        self._recent: OrderedDict[str, tuple[int, ...]] = OrderedDict()  # least recently used first
        self._recent_tokens = 0
        self._lock = threading.Lock()  # routing encodes in a worker thread

    @classmethod
    def of(cls, tokenizer: Any) -> TextEncoder:
        """The encoder of `tokenizer` that every part of the gateway shares (a new one for an object that cannot be
        weakly referenced)."""
        with _ENCODERS_LOCK:
            try:
                encoder = _ENCODERS.get(tokenizer)
                if encoder is None:
                    encoder = _ENCODERS[tokenizer] = cls(tokenizer)
            except TypeError:
                encoder = cls(tokenizer)
        return encoder

    def ids(self, text: str) -> list[int]:
        """The token ids of `text`."""
        return list(self._ids_of(text))

    def count(self, text: str) -> int:
        """How many tokens `text` is."""
        return len(self._ids_of(text)) if text else 0

    def _ids_of(self, text: str) -> tuple[int, ...]:
        with self._lock:
            ids = self._recent.get(text)
            if ids is not None:
                self._recent.move_to_end(text)
                return ids
        ids = tuple(self._encode(text))
        if len(ids) <= RECENT_TOKENS:
            with self._lock:
                if text not in self._recent:
                    self._recent[text] = ids
                    self._recent_tokens += len(ids)
                    while len(self._recent) > RECENT_TEXTS or self._recent_tokens > RECENT_TOKENS:
                        self._recent_tokens -= len(self._recent.popitem(last=False)[1])
        return ids

    def _encode(self, text: str) -> list[int]:
        if self._fast is not None:
            return self._fast([text], add_special_tokens=False)[0].ids
        if self._backend is not None:
            return self._backend.encode(text, add_special_tokens=False).ids
        return list(self._tokenizer.encode(text, add_special_tokens=False))
