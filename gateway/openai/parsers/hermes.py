"""`hermes`: Hermes 2 Pro/3, Qwen 2.5 and Qwen 3 (`<tool_call>` JSON `</tool_call>`, one block per call).

    Let me check.<tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

`"parameters"` is accepted for `"arguments"`, and arguments given as a JSON string holding an object too.
"""

from __future__ import annotations

from gateway.openai.parsers.base import loads
from gateway.openai.parsers.marker import MarkerToolParser

_END = "</tool_call>"


class HermesToolParser(MarkerToolParser):
    """`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, any number of them."""

    name = "hermes"
    start = "<tool_call>"

    def _open_block(self) -> None:
        self._searched = 0

    def _block(self, final: bool) -> bool:
        buf = self._buf
        end = buf.find(_END, self._searched)
        if end < 0:
            if not final:
                self._searched = max(0, len(buf) - len(_END) + 1)
                return False
            body, used = buf, len(buf)
        else:
            body, used = buf[:end], end + len(_END)
        self._buf = buf[used:]
        raw = self.start + buf[:used]
        value, ok = loads(body)
        if ok:
            self._call_from_object(value, raw)
        else:
            self._reject(raw, "the call is not valid JSON" if end >= 0 else "the call was cut off")
        return True
