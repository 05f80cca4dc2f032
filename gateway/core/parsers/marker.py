"""Parsers whose calls start with a marker (`<tool_call>`, `[TOOL_CALLS]`, ...): text until the marker, then a block.

Outside a block the only per-piece work is `str.find` of the marker and, when it is absent, a look at the last few
characters for a partial marker: no regular expression on the no-markup path.
"""

from __future__ import annotations

from typing import Any

from gateway.core.events import OutputEvent, TextEvent
from gateway.core.parsers.base import ToolParser, partial_tail


class MarkerToolParser(ToolParser):
    """Text mode looks for `start`; block mode hands the text after it to `_block` until that says it is done."""

    start: str

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._buf = ""
        self._in_block = False
        self._first, self._hold = self.start[0], 1 - len(self.start)  # for the no-markup check
        self._deciding = False  # formats whose calls may open the answer without a marker look at its start

    def feed(self, text: str) -> list[OutputEvent]:
        """Take the next piece of generated text; return the events it completes."""
        # The no-markup path: outside a call, no start marker, and none beginning in the last characters.
        idle = not (self._in_block or self._buf or self._strip_ws or self._deciding)
        if idle and text.find(self._first, self._hold) < 0 and self.start not in text:
            return [TextEvent(text)] if text else []
        self._buf += text
        self._run(final=False)
        return self._take()

    def finish(self) -> list[OutputEvent]:
        """The end of the generation: release what is held, settle an unfinished block."""
        self._run(final=True)
        return self._take()

    def _run(self, final: bool) -> None:
        while True:
            if not self._in_block:
                buf = self._buf
                i = buf.find(self.start)
                if i < 0:
                    keep = 0 if final else partial_tail(buf, self.start)
                    self._text(buf[: len(buf) - keep])
                    self._buf = buf[len(buf) - keep :]
                    return
                self._text(buf[:i])
                self._buf = buf[i + len(self.start) :]
                self._in_block = True
                self._open_block()
            if not self._block(final):
                return
            self._in_block = False

    def _open_block(self) -> None:
        """A block starts (the start marker was consumed): reset per-block state."""

    def _block(self, final: bool) -> bool:
        """Consume what it can of `self._buf` (the text after the start marker); True once the block is over.

        With `final`, it must settle: emit the calls it can, reject the rest as content, and return True.
        """
        raise NotImplementedError
