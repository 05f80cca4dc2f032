"""What every tool-call parser shares: hold-back of partial start markers, call events, ids, rejection as content.

A parser sees the decoded text of one choice in pieces (`feed`) and once more at the end (`finish`), and turns it
into content (`TextEvent`) and tool calls (`ToolCallEvent`): per call, one event with `id` and `name` and empty
`arguments`, then one with the arguments as a JSON object. A call is emitted once it is complete (its end marker,
or the end of its JSON value, has arrived), so that a call the model got wrong can still become content: the
model's raw text, markup included, with a warning naming only the parser and the reason (never the text).

Policies all parsers follow, so that any split of the same text gives the same merged events:
- content before a call is emitted as it arrives, except a tail that could be the start of a start marker;
- whitespace right after a call (or a block of calls) is dropped; other text after it is content;
- at `finish`, held-back text is content, and an unterminated call is accepted only if it is complete otherwise.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
from collections.abc import Callable, Collection
from typing import Any, ClassVar

from gateway.core.events import OutputEvent, TextEvent, ToolCallEvent

logger = logging.getLogger("gateway.core.parsers")

_ALNUM = string.ascii_letters + string.digits


def random_call_id() -> str:
    """An OpenAI-style tool call id: `call_` and 24 random characters."""
    return "call_" + secrets.token_hex(12)


def random_mistral_id() -> str:
    """Nine random letters and digits: the only tool call id Mistral chat templates accept back in the history."""
    return "".join(secrets.choice(_ALNUM) for _ in range(9))


def partial_tail(text: str, marker: str) -> int:
    """Length of the longest tail of `text` that is a proper prefix of `marker` (0 if none): two `find`s when none."""
    first = marker[0]
    i = text.find(first, max(0, len(text) - len(marker) + 1))
    while i >= 0:
        if marker.startswith(text[i:]):
            return len(text) - i
        i = text.find(first, i + 1)
    return 0


class ToolParser:
    """Base class: the event list, call emission, rejection and the `has_tool_calls` flag."""

    name: ClassVar[str]
    markers: ClassVar[tuple[str, ...]] = ()  # the markup the parser reads: it must survive detokenization
    default_id: ClassVar[Callable[[], str]] = staticmethod(random_call_id)

    def __init__(self, *, tool_names: Collection[str] | None = None, new_id: Callable[[], str] | None = None) -> None:
        self._tool_names = frozenset(tool_names) if tool_names is not None else None
        self._new_id = new_id or type(self).default_id
        self._out: list[OutputEvent] = []
        self._calls = 0
        self._strip_ws = False  # drop whitespace until the first other character (right after a call)

    @property
    def has_tool_calls(self) -> bool:
        """Whether any tool call was emitted (the choice then finishes with `tool_calls`)."""
        return self._calls > 0

    def feed(self, text: str) -> list[OutputEvent]:
        """Take the next piece of generated text; return the events it completes."""
        raise NotImplementedError

    def finish(self) -> list[OutputEvent]:
        """The end of the generation: release what is held, settle an unfinished call."""
        raise NotImplementedError

    def _take(self) -> list[OutputEvent]:
        out, self._out = self._out, []
        return out

    def _text(self, text: str) -> None:
        if self._strip_ws:
            text = text.lstrip()
            if not text:
                return
            self._strip_ws = False
        if text:
            self._out.append(TextEvent(text))

    def _reject(self, raw: str, reason: str) -> None:
        """The model's attempt at a call cannot be one: its raw text becomes content."""
        logger.warning("tool parser %s: %s; the text is returned as content", self.name, reason)
        self._strip_ws = False
        if raw:
            self._out.append(TextEvent(raw))

    def _call(self, name: Any, arguments: Any, raw: str) -> bool:
        """Emit a call if `name` and `arguments` make one (else reject `raw`); returns whether it did."""
        reason = self._check(name, arguments)
        if reason is None and isinstance(arguments, str):
            arguments = _loads_object(arguments)
            reason = None if arguments is not None else "arguments are a string that is not a JSON object"
        if reason is not None:
            self._reject(raw, reason)
            return False
        self._emit(name, json.dumps(arguments if arguments is not None else {}, ensure_ascii=False))
        return True

    def _check(self, name: Any, arguments: Any) -> str | None:
        if not isinstance(name, str) or not name:
            return "no function name"
        if self._tool_names is not None and name not in self._tool_names:
            return "a function the request does not offer"
        if arguments is not None and not isinstance(arguments, dict | str):
            return "arguments are not a JSON object"
        return None

    def _emit(self, name: str, arguments_json: str) -> None:
        index = self._calls
        self._calls += 1
        self._out.append(ToolCallEvent(call_index=index, id=self._new_id(), name=name, arguments=""))
        self._out.append(ToolCallEvent(call_index=index, id=None, name=None, arguments=arguments_json))
        self._strip_ws = True

    def _call_from_object(self, value: Any, raw: str) -> bool:
        """A `{"name": ..., "arguments"|"parameters": {...}}` object as a call (else reject `raw`)."""
        if not isinstance(value, dict):
            self._reject(raw, "the call is not a JSON object")
            return False
        arguments = value.get("arguments", value.get("parameters"))
        return self._call(value.get("name"), arguments, raw)


def _loads_object(text: str) -> dict[str, Any] | None:
    """`text` parsed as a JSON object, or None (control characters inside strings allowed, as `loads`)."""
    try:
        value = json.loads(text, strict=False)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def loads(text: str) -> tuple[Any, bool]:
    """(value, True) for valid JSON text, (None, False) otherwise. Raw control characters inside strings are
    taken as they are: xgrammar's JSON grammars let a guided model write them (a forced call's argument with a
    U+0004 was returned as text), and the call's arguments are written out again, escaped, by `_call`."""
    try:
        return json.loads(text, strict=False), True
    except ValueError:
        return None, False
