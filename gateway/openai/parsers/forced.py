"""`forced`: the output of a forced tool call (`tool_choice` `required` or a named function) as tool calls.

Under the guide of `guides.tool_choice_guide` the model writes only JSON, a list of calls:

    [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]

Each call is emitted as soon as its object closes. A lone call object (not in a list) is accepted too. Output
that ends inside a call whose name was written (cut off by `max_tokens`) gives that call with its arguments as far
as they got, as OpenAI returns a cut call (`finish_reason` `length`); other incomplete output is content.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.openai.events import OutputEvent
from gateway.openai.parsers.base import ToolParser, loads
from gateway.openai.parsers.scan import NestingScanner

_SPACE = " \t\r\n"
_BETWEEN_ITEMS = _SPACE + ","
# The start of a call object as the guide has it write: its name first, then the arguments key.
_NAME = re.compile(r'\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")')
_ARGUMENTS_KEY = re.compile(r'\s*,\s*"arguments"\s*:\s*')


class ForcedCallsParser(ToolParser):
    """A JSON list of `{"name", "arguments"}` objects, emitted call by call."""

    name = "forced"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._buf = ""
        self._pos = 0  # where parsing resumes
        self._unsaid = 0  # the text from here is not in an emitted call (content if the output fails)
        self._state = "open"  # open -> items -> done, or failed
        self._single = False
        self._scanner: NestingScanner | None = None

    def feed(self, text: str) -> list[OutputEvent]:
        """Take the next piece of generated text; return the calls it completes."""
        if self._state == "failed":
            self._text(text)
        else:
            self._buf += text
            self._run()
        return self._take()

    def finish(self) -> list[OutputEvent]:
        """The end of the generation: what is not a call is content."""
        if self._state in ("open", "items") and not self._cut_call():
            self._fail("the forced call output is incomplete")
        elif self._state == "done" and self._buf[self._pos :].strip():
            self._fail("text after the forced calls")
        return self._take()

    def _cut_call(self) -> bool:
        """Emit the call the output ended in, if its name is complete: arguments as far as they got (maybe "")."""
        rest = self._buf[self._pos :] if self._state == "items" else ""
        head = _NAME.match(rest)
        if head is None:
            return not rest.strip(" \t\r\n,") and self.has_tool_calls  # cut between calls: nothing is lost
        name, ok = loads(head.group(1))
        if not ok or self._check(name, None) is not None:
            return False
        key = _ARGUMENTS_KEY.match(rest, head.end())
        self._emit(name, rest[key.end() :] if key else "")
        return True

    def _fail(self, reason: str) -> None:
        self._reject(self._buf[self._unsaid :], reason)
        self._state, self._buf, self._pos = "failed", "", 0

    def _run(self) -> None:
        buf = self._buf
        while self._state in ("open", "items"):
            pos = self._skip(self._pos)
            if pos == len(buf):
                return
            char = buf[pos]
            if self._state == "open":
                if char not in "[{":
                    self._fail("the forced call output is not a list of calls")
                    return
                self._single = char == "{"
                self._state, self._pos = "items", pos if self._single else pos + 1
                continue
            self._pos = pos
            if char == "]" and not self._single:
                self._state, self._pos, self._unsaid = "done", pos + 1, pos + 1
                return
            if char != "{":
                self._fail("the forced call output is not a list of calls")
                return
            if self._scanner is None:
                self._scanner = NestingScanner(pos)
            end = self._scanner.end(buf)
            if end is None:
                return
            value, ok = loads(buf[pos:end])
            if not ok:
                self._fail("a forced call is not valid JSON")
                return
            self._scanner = None
            if not self._call_from_object(value, buf[self._unsaid :]):
                self._state, self._buf, self._pos = "failed", "", 0
                return
            self._pos = self._unsaid = end
            if self._single:
                self._state = "done"

    def _skip(self, pos: int) -> int:
        buf = self._buf
        skip = _BETWEEN_ITEMS if self._state == "items" else _SPACE
        while pos < len(buf) and buf[pos] in skip:
            pos += 1
        return pos
