"""Stop strings with OpenAI semantics: output ends before the first stop string, which is not included.

Streaming text arrives in pieces, and a stop string can straddle two pieces, so the matcher holds back the
longest tail of the text that could still grow into a stop string and releases it once it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence


def trim_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` before the stop string that is complete first; returns (text, whether one matched).

    "Complete first" (earliest end, then earliest start) is what token-by-token generation sees: with stops
    "🚀" and "b🚀.", the text "b🚀." has stopped at "🚀" before "b🚀." could complete.
    """
    best: tuple[int, int] | None = None
    for stop in stops:
        start = text.find(stop) if stop else -1
        if start >= 0 and (best is None or (start + len(stop), start) < best):
            best = (start + len(stop), start)
    return (text[: best[1]], True) if best is not None else (text, False)


class StopMatcher:
    """Incremental stop-string matching over streamed text pieces."""

    __slots__ = ("_held", "_longest", "_stops", "matched")

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""
        self.matched = False

    def feed(self, piece: str) -> str:
        """Add a piece; return the text that is now safe to emit (nothing more once a stop matched)."""
        if self.matched:
            return ""
        if not self._stops:
            return piece
        text = self._held + piece
        emitted, matched = trim_at_stop(text, self._stops)
        if matched:
            self.matched = True
            self._held = ""
            return emitted
        keep = self._partial_tail(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The held-back text, at the end of the generation."""
        held, self._held = self._held, ""
        return "" if self.matched else held

    def _partial_tail(self, text: str) -> int:
        """Length of the longest tail of `text` that is a proper prefix of some stop string."""
        for size in range(min(self._longest - 1, len(text)), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0
