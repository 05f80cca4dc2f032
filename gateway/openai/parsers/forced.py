"""`forced`: the output of a forced tool call (`tool_choice` `required` or a named function) as tool calls.

Under the guide of `guides.tool_choice_guide` the model writes only JSON, a list of calls:

    [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]

Each call is emitted as soon as its object closes. A lone call object (not in a list) is accepted too. Output
that does not complete the list (cut off by `max_tokens`) leaves its unparsed rest as content.
"""

from __future__ import annotations

from typing import Any

from gateway.openai.events import OutputEvent
from gateway.openai.parsers.base import ToolParser, loads
from gateway.openai.parsers.scan import NestingScanner

_SKIP = " \t\r\n,"


class ForcedCallsParser(ToolParser):
    """A JSON list of `{"name", "arguments"}` objects, emitted call by call."""

    name = "forced"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._buf = ""
        self._pos = 0  # what is before it has been turned into calls
        self._state = "open"  # open -> items -> done, or failed
        self._single = False
        self._scanner: NestingScanner | None = None

    def feed(self, text: str) -> list[OutputEvent]:
        """Take the next piece of generated text; return the calls it completes."""
        self._buf += text
        self._run(final=False)
        return self._take()

    def finish(self) -> list[OutputEvent]:
        """The end of the generation: what is not a call is content."""
        self._run(final=True)
        rest = self._buf[self._pos :]
        if self._state == "failed":  # already logged
            self._strip_ws = False
            self._text(rest)
        elif self._state != "done" or rest.strip():
            self._reject(rest, "the forced call output is incomplete")
        return self._take()

    def _run(self, final: bool) -> None:
        buf = self._buf
        while self._state in ("open", "items"):
            pos = self._skip(self._pos)
            if pos == len(buf):
                return
            char = buf[pos]
            if self._state == "open":
                self._single = char == "{"
                if char not in "[{":
                    self._state = "failed"
                    return
                self._state, self._pos = "items", pos if self._single else pos + 1
                continue
            if char == "]" and not self._single:
                self._state, self._pos = "done", pos + 1
                return
            if char != "{":
                self._state = "failed"
                return
            if self._scanner is None:
                self._scanner = NestingScanner(pos)
            end = self._scanner.end(buf)
            if end is None:
                return
            value, ok = loads(buf[pos:end])
            if not ok or not self._call_from_object(value, ""):
                self._state = "failed"
                return
            self._scanner, self._pos = None, end
            if self._single:
                self._state = "done"

    def _skip(self, pos: int) -> int:
        buf = self._buf
        while pos < len(buf) and buf[pos] in (_SKIP if self._state == "items" else _SKIP[:4]):
            pos += 1
        return pos
