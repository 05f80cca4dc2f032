"""Stop strings with OpenAI semantics: output ends before the first stop string, which is not included.

Streaming text arrives in pieces, and a stop string can straddle two pieces, so the matcher holds back the
longest tail of the text that could still grow into a stop string and releases it once it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence


def find_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """Where the stop string that is complete first starts in `text`, and which one it is (None: none is).

    "Complete first" (earliest end, then earliest start) is what token-by-token generation sees: with stops
    "🚀" and "b🚀.", the text "b🚀." has stopped at "🚀" before "b🚀." could complete.
    """
    best: tuple[int, int, str] | None = None
    for stop in stops:
        start = text.find(stop) if stop else -1
        if start >= 0 and (best is None or (start + len(stop), start) < best[:2]):
            best = (start + len(stop), start, stop)
    return (best[1], best[2]) if best is not None else None


def trim_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` before the stop string that is complete first; returns (text, whether one matched)."""
    found = find_stop(text, stops)
    return (text[: found[0]], True) if found is not None else (text, False)


class StopMatcher:
    """Incremental stop-string matching over streamed text pieces."""

    __slots__ = ("_held", "_longest", "_stops", "matched", "stop")

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""
        self.matched = False
        self.stop: str | None = None  # the stop string that matched

    def feed(self, piece: str) -> str:
        """Add a piece; return the text that is now safe to emit (nothing more once a stop matched)."""
        if self.matched:
            return ""
        if not self._stops:
            return piece
        text = self._held + piece
        found = find_stop(text, self._stops)
        if found is not None:
            self.matched = True
            self.stop = found[1]
            self._held = ""
            return text[: found[0]]
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
