"""Where a bracketed value (a JSON object or list, a Python call list) ends, found incrementally.

The scanner counts brackets outside string literals; it does not validate: the caller parses the value once its
end is known, and rejects it if it is not valid.
"""

from __future__ import annotations

_OPEN = "{[("
_CLOSE = "}])"


class NestingScanner:
    """Scans a growing buffer from the opening bracket at `start`; `end(buffer)` resumes where it stopped."""

    __slots__ = ("_depth", "_escape", "_pos", "_quote", "_quotes")

    def __init__(self, start: int, quotes: str = '"') -> None:
        self._pos = start
        self._quotes = quotes
        self._depth = 0
        self._quote = ""
        self._escape = False

    def end(self, buffer: str) -> int | None:
        """Index just after the value's closing bracket, or None if it has not arrived yet."""
        quotes, quote, escape, depth = self._quotes, self._quote, self._escape, self._depth
        for i in range(self._pos, len(buffer)):
            char = buffer[i]
            if quote:
                if escape:
                    escape = False
                elif char == "\\":
                    escape = True
                elif char == quote:
                    quote = ""
            elif char in quotes:
                quote = char
            elif char in _OPEN:
                depth += 1
            elif char in _CLOSE:
                depth -= 1
                if depth <= 0:
                    self._pos = i + 1
                    return i + 1
        self._pos, self._quote, self._escape, self._depth = len(buffer), quote, escape, depth
        return None
