"""Text to token ids as the upstream's preprocessing makes them (no special tokens added).

A fast tokenizer's Rust tokenizer is called directly, through `encode_batch_fast` (tokenizers >= 0.21), which
also skips the character offsets that ids never need: the same ids without transformers' Python layer around
them, a third less time for a 232-token prompt and 13-15 % less app CPU per direct-mode request (bench.app_cost
--upstream direct). A tokenizer without one (a slow tokenizer) is called through its own `encode`.

One request's prompt may be asked for by several parts: its key's token limits (a count), prefix-affinity
routing (ids, in a thread), direct mode's upstream request (ids) and its usage when the engine does not report
the prompt's tokens (a count). `TextEncoder.of(tokenizer)` is the one encoder of a tokenizer, and it keeps the
encodings of the texts it encoded last, so the prompt is tokenized once (a microsecond per token) however many
ask. A text asked for once costs 1-2 µs more than without them (a 150-token count: ~55 against ~54 µs on 2 cores).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

RECENT_TEXTS = 64  # texts kept: more than the requests admitted between one's admission and its upstream call
RECENT_TOKENS = 262_144  # tokens kept at most (~20 MB of encodings); a longer text is not kept at all

_ENCODERS: weakref.WeakKeyDictionary[Any, TextEncoder] = weakref.WeakKeyDictionary()
_ENCODERS_LOCK = threading.Lock()


class TextEncoder:
    """Token ids and counts of texts, for one tokenizer; the encodings of the texts it encoded last are kept."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._fast = getattr(backend, "encode_batch_fast", None)
        self._backend = backend
        self._recent: OrderedDict[str, Any] = OrderedDict()  # text -> encoding, least recently used first
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
        encoded = self._encoded(text)
        return list(encoded) if isinstance(encoded, list) else list(encoded.ids)

    def count(self, text: str) -> int:
        """How many tokens `text` is."""
        return len(self._encoded(text)) if text else 0

    def _encoded(self, text: str) -> Any:
        """The Rust tokenizer's encoding of `text` (its ids are made into a list only when asked for), or a slow
        tokenizer's id list; kept for the texts encoded last."""
        with self._lock:
            encoded = self._recent.get(text)
            if encoded is not None:
                self._recent.move_to_end(text)
                return encoded
        encoded = self._encode(text)
        size = len(encoded)
        if size <= RECENT_TOKENS:
            with self._lock:
                if text not in self._recent:
                    self._recent[text] = encoded
                    self._recent_tokens += size
                    while len(self._recent) > RECENT_TEXTS or self._recent_tokens > RECENT_TOKENS:
                        self._recent_tokens -= len(self._recent.popitem(last=False)[1])
        return encoded

    def _encode(self, text: str) -> Any:
        if self._fast is not None:
            return self._fast([text], add_special_tokens=False)[0]
        if self._backend is not None:
            return self._backend.encode(text, add_special_tokens=False)
        return list(self._tokenizer.encode(text, add_special_tokens=False))
