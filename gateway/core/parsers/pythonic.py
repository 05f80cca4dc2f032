"""`pythonic`: Llama 4 (and Llama 3.2 with the pythonic prompt): a Python list of calls with keyword arguments.

    [get_weather(city="Paris", days=3), get_time(tz=None)]

Optionally wrapped in `<|python_start|>` ... `<|python_end|>`. Calls are recognised only when the answer starts
with the list (as peers do); the list is emitted once it closes, each argument converted from a Python literal
to JSON (`None` -> null, tuples -> lists). Anything else in the list (positional arguments, expressions) makes the
whole list content.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from gateway.core.events import OutputEvent, TextEvent
from gateway.core.parsers.base import ToolParser
from gateway.core.parsers.scan import NestingScanner

_OPEN = "<|python_start|>"
_CLOSE = "<|python_end|>"
_START = re.compile(r"\[\s*[A-Za-z_][\w.]*\s*\(")
_START_PREFIX = re.compile(r"\[\s*(?:[A-Za-z_][\w.]*\s*)?")


class PythonicToolParser(ToolParser):
    """A list of calls at the start of the answer; everything else is content, passed through."""

    name = "pythonic"
    markers = (_OPEN, _CLOSE)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._buf = ""
        self._state = "start"  # start -> list -> content
        self._scanner: NestingScanner | None = None

    def feed(self, text: str) -> list[OutputEvent]:
        """Take the next piece of generated text; return the events it completes."""
        if self._state == "content" and not self._buf and not self._strip_ws:
            return [TextEvent(text)] if text else []  # after the start: plain text
        self._buf += text
        self._run(final=False)
        return self._take()

    def finish(self) -> list[OutputEvent]:
        """The end of the generation: release what is held, settle an unfinished list."""
        self._run(final=True)
        return self._take()

    def _run(self, final: bool) -> None:
        if self._state == "start":
            self._decide(final)
        if self._state == "list":
            self._list(final)
        if self._state == "content":
            if self._strip_ws and self._buf.lstrip().startswith(_CLOSE):
                self._buf = self._buf.lstrip()[len(_CLOSE) :]
            elif self._strip_ws and _CLOSE.startswith(self._buf.lstrip()) and not final:
                return
            self._text(self._buf)
            self._buf = ""

    def _decide(self, final: bool) -> None:
        view = self._buf.lstrip()
        if view.startswith(_OPEN):
            view = view[len(_OPEN) :].lstrip()
        elif not final and _OPEN.startswith(view):
            return
        if _START.match(view):
            self._state = "list"
            self._scanner = NestingScanner(len(self._buf) - len(view), quotes="\"'")
        elif final or not (view == "" or _START_PREFIX.fullmatch(view)):
            self._state = "content"

    def _list(self, final: bool) -> None:
        assert self._scanner is not None
        end = self._scanner.end(self._buf)
        if end is None:
            if not final:
                return
            end = len(self._buf)
        raw, self._buf = self._buf[:end], self._buf[end:]
        self._state = "content"
        calls = _calls(raw.lstrip().removeprefix(_OPEN))
        if calls is None:
            self._reject(raw, "not a list of calls with literal keyword arguments")
            return
        for name, arguments in calls:
            reason = self._check(name, arguments)
            if reason is not None:
                self._reject(raw, reason)
                return
        for name, arguments in calls:
            self._call(name, arguments, raw)


def _calls(source: str) -> list[tuple[str, dict[str, Any]]] | None:
    """`[f(a=1), g.h(b="x")]` as [(name, arguments)], or None when it is not exactly that."""
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return None
    if not isinstance(tree, ast.List) or not tree.elts:
        return None
    calls = []
    for node in tree.elts:
        if not isinstance(node, ast.Call) or node.args or any(k.arg is None for k in node.keywords):
            return None
        name = _dotted(node.func)
        if name is None:
            return None
        try:
            arguments = {k.arg: _jsonable(ast.literal_eval(k.value)) for k in node.keywords if k.arg}
        except (ValueError, TypeError, SyntaxError, RecursionError):
            return None
        calls.append((name, arguments))
    return calls


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _jsonable(value: Any) -> Any:
    """A Python literal as a JSON value (tuples and sets become lists); TypeError for what JSON cannot hold."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _jsonable(item) for key, item in value.items()}
    raise TypeError("not a JSON value")
