"""The core's events as Responses' named events and `response` objects: a small state machine of open items.

Streamed, a response is `response.created` and `response.in_progress` (each with the whole response), then its
output items in order, each opened (`output_item.added`, `content_part.added`), fed (`output_text.delta`,
`reasoning_text.delta`, `function_call_arguments.delta`) and closed (`.done` events, `output_item.done`) before
the next opens, then `response.completed` or `response.incomplete` (the whole response again). An event of
another kind than the open item's closes it and opens the next. A failure after the start closes the open item
(`incomplete`) and ends with `error` and `response.failed`. Every event carries its `type` and a
`sequence_number` counted from 0.

Every event is JSON bytes and every response a plain dict, so a store can keep them and replay them as they were;
`snapshot()` is the response as it stands at any moment (what a store saves for a client that left), `outcome` the
finished or failed one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypeVar

import orjson

from gateway.core.choices import Choice, ChoiceRun
from gateway.core.events import ChoiceEvent, FinishEvent, ReasoningEvent, TextEvent, ToolCallEvent
from gateway.core.generation import CollectedChoice, NamedEvent
from gateway.core.tokens import TokenCounter
from gateway.errors import GatewayError
from gateway.protocols.responses.items import REASONING_PURPOSE
from gateway.protocols.responses.options import Includes
from gateway.protocols.responses.output import (
    REASONING_DELTA,
    TEXT_DELTA,
    CallOutput,
    MessageOutput,
    OutputItem,
    ReasoningOutput,
    stream_logprob,
)
from gateway.protocols.responses.response import error_object, usage_json
from gateway.protocols.sealing import Sealer

_SEQUENCE = b',"sequence_number":%d}'
Item = TypeVar("Item", MessageOutput, ReasoningOutput, CallOutput)


class ResponsesEncoder:
    """One response's events and objects (Responses has one choice: index 0)."""

    def __init__(self, head: dict[str, Any], counter: TokenCounter, includes: Includes, sealer: Sealer) -> None:
        self.head = head
        self._counter = counter
        self._includes = includes
        self._sealer = sealer
        self.sequence = 0
        self.items: list[OutputItem] = []
        self._open: OutputItem | None = None
        self._calls: dict[int, CallOutput] = {}  # the core's call index -> its item
        self._statuses: dict[str, str] = {}  # item id -> the status it closed with
        self._finish: FinishEvent | None = None
        self._started = False
        self.outcome: dict[str, Any] | None = None  # the finished (or failed) response, once there is one

    # --- streamed ---------------------------------------------------------------------------------------------

    def opening(self, choices: Sequence[Choice]) -> list[NamedEvent]:
        """`response.created` and `response.in_progress`."""
        self._started = True
        response = self.snapshot()
        return [self._event("response.created", {"response": response}),
                self._event("response.in_progress", {"response": response})]  # fmt: skip

    def chunks(self, choice: Choice, events: list[ChoiceEvent]) -> list[NamedEvent]:
        """The events of the choice's events: deltas into the open item, items opened and closed as kinds change."""
        out: list[NamedEvent] = []
        for event in events:
            item = self._open
            if type(event) is TextEvent:
                if type(item) is not MessageOutput:
                    item = self._switch(MessageOutput(len(self.items), self._includes.logprobs), out)
                item.texts.append(event.text)
                out.append((TEXT_DELTA, self._text_delta(item, event)))
            elif type(event) is ReasoningEvent:
                if type(item) is not ReasoningOutput:
                    item = self._switch(ReasoningOutput(len(self.items)), out)
                item.texts.append(event.text)
                out.append(self._delta(REASONING_DELTA, item.delta_prefix, event.text))
            elif type(event) is ToolCallEvent:
                call = self._calls.get(event.call_index)
                if call is None:
                    call = CallOutput(len(self.items), event.id or "", event.name or "")
                    self._calls[event.call_index] = call
                    self._switch(call, out)
                call.arguments.append(event.arguments)
                if event.arguments:
                    out.append(
                        self._delta(b"response.function_call_arguments.delta", call.delta_prefix, event.arguments)
                    )
            elif type(event) is FinishEvent:
                self._finish = event
                self._close(out, "incomplete" if event.reason == "length" else "completed")
        return out

    def closing(self, run: ChoiceRun) -> list[NamedEvent]:
        """`response.completed`, or `response.incomplete` when the output was cut at `max_output_tokens`."""
        response = self.final(run)
        return [self._event(f"response.{response['status']}", {"response": response})]

    def failure(self, error: GatewayError, body: bytes) -> list[NamedEvent]:
        """The open item closed as incomplete, then `error` and `response.failed` (after `response.created` if the
        stream had not opened yet)."""
        out = self.opening(()) if not self._started else []
        self._close(out, "incomplete")
        fields = {"code": error.code or error.type, "message": error.message, "param": error.param}
        out.append(self._event("error", fields))
        failed = self.outcome = self.snapshot() | {"status": "failed", "error": error_object(error)}
        out.append(self._event("response.failed", {"response": failed}))
        return out

    # --- whole objects ----------------------------------------------------------------------------------------

    def response(self, run: ChoiceRun, collected: dict[int, CollectedChoice]) -> dict[str, Any]:
        """The body of a non-streamed response: reasoning, the message, the calls, in that order."""
        out = collected[0]
        finish = out.finish
        status = "incomplete" if finish is not None and finish.reason == "length" else "completed"
        if out.reasoning:
            reasoning = ReasoningOutput(len(self.items))
            reasoning.texts = out.reasoning
            self._add(reasoning, status)
        if out.text or out.logprobs:
            message = MessageOutput(len(self.items), self._includes.logprobs)
            message.texts = out.text
            if message.logprobs is not None:
                message.logprobs = out.logprobs
            self._add(message, status)
        for _, call in sorted(out.calls.items()):
            function = CallOutput(len(self.items), call["id"] or "", call["name"] or "")
            function.arguments = call["arguments"]
            self._add(function, "completed")
        self._finish = finish
        return self.final(run)

    def final(self, run: ChoiceRun) -> dict[str, Any]:
        """The finished response, with its usage."""
        finish = self._finish
        truncated = finish is not None and finish.reason == "length"
        reasoning = "".join(item.text for item in self.items if isinstance(item, ReasoningOutput))
        fields: dict[str, Any] = {"usage": usage_json(run.usage(), self._counter.count(reasoning))}
        if truncated:
            fields |= {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
        else:
            fields |= {"status": "completed", "completed_at": int(time.time())}
        self.outcome = self.snapshot() | fields
        return self.outcome

    def snapshot(self) -> dict[str, Any]:
        """The response as it stands: the head with every item so far (closed ones as they closed)."""
        return self.head | {"output": [self._item_now(item) for item in self.items]}

    # --- the state machine ------------------------------------------------------------------------------------

    def _switch(self, item: Item, out: list[NamedEvent]) -> Item:
        self._close(out, "completed")
        self._open = item
        self.items.append(item)
        out += [self._event(name, fields) for name, fields in item.opened()]
        return item

    def _close(self, out: list[NamedEvent], status: str) -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        self._seal(item)
        out += [self._event(name, fields) for name, fields in item.closed(status)]
        self._statuses[item.id] = status

    def _add(self, item: OutputItem, status: str) -> None:
        self.items.append(item)
        self._seal(item)
        self._statuses[item.id] = status

    def _seal(self, item: OutputItem) -> None:
        if isinstance(item, ReasoningOutput) and self._includes.encrypted_reasoning:
            item.sealed = self._sealer.seal(item.text, REASONING_PURPOSE)

    def _item_now(self, item: OutputItem) -> dict[str, Any]:
        return item.item(self._statuses.get(item.id, "in_progress"))

    # --- event bytes --------------------------------------------------------------------------------------------

    def _event(self, kind: str, fields: dict[str, Any]) -> NamedEvent:
        sequence = self.sequence
        self.sequence = sequence + 1
        return kind.encode(), orjson.dumps({"type": kind, **fields, "sequence_number": sequence})

    def _delta(self, kind: bytes, prefix: bytes, text: str) -> NamedEvent:
        sequence = self.sequence
        self.sequence = sequence + 1
        return kind, prefix + orjson.dumps(text) + _SEQUENCE % sequence

    def _text_delta(self, item: MessageOutput, event: TextEvent) -> bytes:
        sequence = self.sequence
        self.sequence = sequence + 1
        if item.logprobs is None:
            return item.delta_prefix + orjson.dumps(event.text) + _SEQUENCE % sequence
        logprobs = event.logprobs or []
        item.logprobs.extend(logprobs)
        tail = b',"logprobs":' + orjson.dumps([stream_logprob(lp) for lp in logprobs])
        return item.delta_prefix + orjson.dumps(event.text) + tail + _SEQUENCE % sequence
