"""`deepseek_v3`: DeepSeek V3, R1 (0528) and V3.1 tool calls, one block of calls between special tokens.

V3 and R1 (the type, the name on its own line, the arguments in a fenced JSON block):

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather
    ```json
    {"city": "Paris"}
    ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>

V3.1 (the name before the separator, bare JSON after it):

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜>
    <｜tool▁calls▁end｜>

The two are told apart per call: JSON right after the separator is V3.1. Whitespace between calls is ignored.
"""

from __future__ import annotations

from gateway.core.parsers.base import loads
from gateway.core.parsers.marker import MarkerToolParser

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"


class DeepSeekV3ToolParser(MarkerToolParser):
    """One `<｜tool▁calls▁begin｜>` block; each call is emitted as soon as its `<｜tool▁call▁end｜>` arrives."""

    name = "deepseek_v3"
    start = CALLS_BEGIN
    markers = (CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEP)

    def _open_block(self) -> None:
        self._fresh = True

    def _block(self, final: bool) -> bool:
        while True:
            buf = self._buf.lstrip()
            self._buf = buf
            if buf.startswith(CALLS_END):
                self._buf = buf[len(CALLS_END) :]
                self._strip_ws = True
                return True
            if buf.startswith(CALL_BEGIN):
                end = buf.find(CALL_END)
                if end < 0:
                    if final:
                        self._buf = ""
                        self._reject(buf, "the call was cut off")
                        return True
                    return False
                self._buf = buf[end + len(CALL_END) :]
                self._fresh = False
                self._parse_call(buf[len(CALL_BEGIN) : end], buf[: end + len(CALL_END)])
                continue
            if not final and (CALLS_END.startswith(buf) or CALL_BEGIN.startswith(buf)):
                return False  # empty, or a marker still arriving
            # Anything else ends the block and is content (a missing end marker after calls is fine).
            if self._fresh:
                self._reject(CALLS_BEGIN, "no call after the start marker")
            return True

    def _parse_call(self, body: str, raw: str) -> None:
        head, sep, tail = body.partition(SEP)
        if not sep:
            self._reject(raw, "no tool separator")
            return
        if tail.lstrip().startswith("{"):  # V3.1
            name, arguments = head.strip(), tail
        else:  # V3: the name on its own line, then a ```json fence
            name, _, arguments = tail.partition("\n")
            name, arguments = name.strip(), _unfence(arguments)
        value, ok = loads(arguments)
        if not ok:
            self._reject(raw, "the arguments are not valid JSON")
            return
        self._call(name, value, raw)


def _unfence(text: str) -> str:
    """The inside of a ```json ... ``` block (the text itself when it is not fenced)."""
    text = text.strip()
    if text.startswith("```"):
        text = text.partition("\n")[2]
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text
