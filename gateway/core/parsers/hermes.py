"""`hermes`: Hermes 2 Pro/3, Qwen 2.5 and Qwen 3 (`<tool_call>` JSON `</tool_call>`, one block per call).

    Let me check.<tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

The call ends where its JSON object closes (so `</tool_call>` inside an argument string is fine), and the end
marker must follow it; at the end of the generation a complete object without the marker is a call too. Text
after the marker that cannot be a call (no `{`, or text between the object and the end marker) is content at
once: the marker and the text so far, then the rest as ordinary content.
`"parameters"` is accepted for `"arguments"`, and arguments given as a JSON string holding an object too.
"""

from __future__ import annotations

from gateway.core.parsers.base import loads
from gateway.core.parsers.marker import MarkerToolParser
from gateway.core.parsers.scan import NestingScanner

END = "</tool_call>"


class HermesToolParser(MarkerToolParser):
    """`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, any number of them."""

    name = "hermes"
    start = "<tool_call>"
    markers = ("<tool_call>", END)

    def _open_block(self) -> None:
        self._scanner: NestingScanner | None = None
        self._value_end = 0

    def _block(self, final: bool) -> bool:
        buf = self._buf
        if self._scanner is None:
            body = buf.lstrip()
            if not body:
                return final and self._done(len(buf), "the call was cut off")
            if body[0] != "{":  # not a call: the marker is content, the text goes on as content
                return self._done(0, "the call is not a JSON object")
            self._scanner = NestingScanner(len(buf) - len(body))
        if not self._value_end:
            end = self._scanner.end(buf)
            if end is None:
                return final and self._done(len(buf), "the call was cut off")
            self._value_end = end
        tail = buf[self._value_end :].lstrip()
        if tail.startswith(END):
            return self._done(len(buf) - len(tail) + len(END), None)
        if not tail or END.startswith(tail):
            return final and self._done(len(buf), None)
        return self._done(self._value_end, "text between the call and its end marker")

    def _done(self, used: int, reason: str | None) -> bool:
        """The block ends after `used` characters: a call from its object, or content for `reason`."""
        raw = self.start + self._buf[:used]
        value_text = self._buf[: self._value_end]
        self._buf = self._buf[used:]
        if reason is not None:
            self._reject(raw, reason)
            return True
        value, ok = loads(value_text)
        if ok:
            self._call_from_object(value, raw)
        else:
            self._reject(raw, "the call is not valid JSON")
        return True
