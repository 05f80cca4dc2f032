"""`llama3_json`: Llama 3.1, 3.2 and 3.3 JSON tool calls.

    <|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_time", "parameters": {}}

The marker is optional when the answer starts with the JSON (the usual case with the JSON-based prompt), and may
come after some content. Several calls are separated by `;`. `"arguments"` is accepted for `"parameters"`. A JSON
object that is not a call (no `name`) is content. `<|python_tag|>` followed by something other than JSON (Llama's
built-in `brave_search.call(...)` tools) is content as well, marker included.
"""

from __future__ import annotations

from typing import Any

from gateway.core.parsers.base import loads
from gateway.core.parsers.marker import MarkerToolParser
from gateway.core.parsers.scan import NestingScanner


class Llama3JsonToolParser(MarkerToolParser):
    """JSON calls at the start of the answer or after `<|python_tag|>`, separated by `;`."""

    name = "llama3_json"
    start = "<|python_tag|>"
    markers = ("<|python_tag|>",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._deciding = True  # at the start: a bare `{` opens a call too

    def _run(self, final: bool) -> None:
        if self._deciding and not self._decide(final):
            return
        super()._run(final)

    def _decide(self, final: bool) -> bool:
        """Whether the answer starts with a call can be told yet (True once it is decided)."""
        stripped = self._buf.lstrip()
        if not final and (not stripped or self.start.startswith(stripped)):
            return False
        self._deciding = False
        if stripped.startswith("{"):
            self._buf = stripped
            self._in_block = True
            self._open_block()
            self._prefix = ""
        elif stripped.startswith(self.start):
            self._buf = stripped
        return True

    def _open_block(self) -> None:
        self._prefix = self.start  # what opened the block, for the raw text of a rejected call
        self._scanner: NestingScanner | None = None
        self._expect_value = True

    def _block(self, final: bool) -> bool:
        while True:
            self._buf = self._buf.lstrip()
            if not self._buf:
                return final
            if not self._expect_value:
                if self._buf[0] != ";":
                    return True  # what follows the calls is content
                self._buf = self._buf[1:]
                self._expect_value = True
                continue
            if self._scanner is None:
                if self._buf[0] != "{":
                    self._reject(self._prefix, "no JSON call after the marker")
                    return True
                self._scanner = NestingScanner(0)
            end = self._scanner.end(self._buf)
            if end is None:
                if not final:
                    return False
                end = len(self._buf)
            text, self._buf = self._buf[:end], self._buf[end:]
            raw, self._prefix, self._scanner = self._prefix + text, "", None
            value, ok = loads(text)
            if not ok:
                self._reject(raw, "the call is not valid JSON")
                return True
            if not self._call_from_object(value, raw):
                return True
            self._expect_value = False
