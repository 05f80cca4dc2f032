"""Turning streamed output into text that is right in every chunk, one class per upstream mode.

- `IncrementalDetokenizer` (direct mode): token ids in, text out. Decodes a sliding window twice (from the
  previous boundary, with and without the new ids) and emits the difference once it no longer ends in an
  incomplete character, so multi-byte characters split across tokens and sentencepiece spaces come out whole.
- `CumulativeTextDiff` (bls mode with `accumulate_tokens`): the full text so far in, the new part out, with an
  incomplete tail held back.
- `ReplacementMerger` (ensemble mode): the postprocessing model decodes each chunk on its own, so a character
  split across two tokens is already lost server-side; the gateway cannot repair it, but it holds back a trailing
  U+FFFD and merges it with the U+FFFD that starts the next chunk, so one broken character shows as one U+FFFD.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Streaming detokenization with prefix-offset windows (hold back incomplete UTF-8)."""

    __slots__ = ("_decode_ids", "_ids", "_prefix_offset", "_read_offset")

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._decode_ids: Callable[[list[int]], str]
        if backend is not None:
            # A fast Hugging Face tokenizer: its Rust tokenizer decodes the same text (no clean-up either) for
            # about a third of the cost per call, and this runs twice per streamed token.
            self._decode_ids = functools.partial(backend.decode, skip_special_tokens=skip_special_tokens)
        else:
            self._decode_ids = functools.partial(
                tokenizer.decode, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False
            )
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    @property
    def token_count(self) -> int:
        """How many ids were fed."""
        return len(self._ids)

    def feed(self, ids: Sequence[int]) -> str:
        """Add generated ids; return the text that became complete."""
        self._ids.extend(ids)
        prefix_text = self._decode(self._prefix_offset, self._read_offset)
        new_text = self._decode(self._prefix_offset, len(self._ids))
        if len(new_text) <= len(prefix_text) or new_text.endswith(REPLACEMENT):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :]

    def flush(self) -> str:
        """At the end: whatever is still held back (a character that was never completed stays U+FFFD)."""
        prefix_text = self._decode(self._prefix_offset, self._read_offset)
        new_text = self._decode(self._prefix_offset, len(self._ids))
        self._prefix_offset = self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :]

    def _decode(self, start: int, end: int) -> str:
        if start >= end:
            return ""
        return str(self._decode_ids(self._ids[start:end]))


class CumulativeTextDiff:
    """Cumulative text (all output so far, per response) -> the new text of each response."""

    __slots__ = ("_emitted", "_latest", "increment")

    def __init__(self) -> None:
        self._emitted = 0
        self._latest = ""
        self.increment = ""  # what the last response added, before any hold-back (a token's own text)

    def feed(self, cumulative: str) -> str:
        """The new, complete part of `cumulative` (an incomplete trailing character is held back)."""
        self.increment = cumulative[len(self._latest) :]
        self._latest = cumulative
        stable = cumulative.rstrip(REPLACEMENT)
        if len(stable) <= self._emitted:
            return ""
        piece = stable[self._emitted :]
        self._emitted = len(stable)
        return piece

    def flush(self) -> str:
        """At the end: the held-back tail, if any."""
        piece = self._latest[self._emitted :]
        self._emitted = len(self._latest)
        return piece


class ReplacementMerger:
    """Per-chunk text from the ensemble: one U+FFFD per character broken across a chunk border."""

    __slots__ = ("_held", "increment")

    def __init__(self) -> None:
        self._held = ""
        self.increment = ""  # the last piece as it came (a token's own text)

    def feed(self, piece: str) -> str:
        """Text to emit now; a trailing run of U+FFFD waits for the next piece."""
        self.increment = piece
        if self._held and piece.startswith(REPLACEMENT):
            piece = piece.lstrip(REPLACEMENT)
            piece = self._held + piece  # the continuation bytes belonged to the held character
            self._held = ""
        else:
            piece = self._held + piece
            self._held = ""
        stable = piece.rstrip(REPLACEMENT)
        if len(stable) < len(piece):
            self._held = REPLACEMENT
        return stable

    def flush(self) -> str:
        """At the end: the held U+FFFD, if any."""
        held, self._held = self._held, ""
        return held
