"""Stop requests for abandoned ensemble and BLS generations: a few at a time, sent again while the call is open.

A `stop=true` request reaches only a generation that `tensorrt_llm` already holds: TensorRT-LLM's backend
cancels the executor requests it has under that Triton request id and forgets the stop, so a request that was
still in preprocessing, in the ensemble scheduler or in Triton's queue in front of `tensorrt_llm` runs to its
end once it gets there (docs/architecture.md, "Ending a generation"). The abandoned call's end is the proof
that the generation stopped: while the call is still open after its stop was answered, the stop is sent again,
every 0.25 s for the first 2 s (a request that was still queued in front of the engine is caught within a
quarter of a second of reaching it), then at doubling intervals up to every 2 s, until the call ends (or is
cancelled at its deadline). The first stop is sent whatever became of the call. A call that the gateway
cancelled (a timeout, shutdown) can no longer tell when the generation ends: it gets the first 2 s of stops.

At most `concurrency` stop requests are in flight at once, in the order they were asked for, all on the
engine's one channel: a storm of hang-ups does not become a storm of stop requests.

The target is `tensorrt_llm`. A called model that declares a `stop` input (a BLS of the user's) gets the first
stop too; this project's `tensorrt_llm_bls` declares none (docs/architecture.md, "Stops answered by the BLS").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from tritonclient.grpc import model_config_pb2

from gateway.engine.tensors import ModelInterface, RequestBuilder

RETRY_S = 0.25
FAST_RETRIES = 8  # every RETRY_S for the first 2 s; then doubling intervals
MAX_RETRY_S = 2.0
CONCURRENCY = 64


@dataclass(frozen=True)
class StopTarget:
    """A model that takes `stop=true` requests, and the inputs Triton insists on (sent empty)."""

    interface: ModelInterface
    required: tuple[str, ...]

    @classmethod
    def of(cls, config: model_config_pb2.ModelConfig) -> StopTarget | None:
        """The model as a stop target; None when it declares no `stop` input."""
        interface = ModelInterface.from_config(config)
        if "stop" not in interface.inputs:
            return None
        return cls(interface, tuple(i.name for i in config.input if not i.optional and i.name != "stop"))

    def message(self, request_id: str) -> bytes:
        """The serialized stop request for this request id."""
        inputs = self.interface.inputs
        builder = RequestBuilder(self.interface, request_id)
        for name in self.required:
            if inputs[name] == "BYTES":
                builder.strings(name, [""])
            elif name == "input_ids":
                builder.int32_array(name, [0])
            else:
                builder.scalar(name, 0)
        if "input_ids" in inputs and "input_ids" not in self.required:
            builder.int32_array("input_ids", [0])  # as NVIDIA's BLS sends its stop requests
        builder.scalar("stop", True)
        if "streaming" in inputs:
            builder.scalar("streaming", False)
        builder.request_outputs([name for name in ("output_ids", "sequence_length") if name in self.interface.outputs])
        return builder.message.SerializeToString()


class OpenCall(Protocol):
    """The abandoned call: stops are repeated until it has ended."""

    @property
    def ended(self) -> bool:
        """Whether the call is over."""

    @property
    def broken(self) -> bool:
        """Whether it ended without the upstream ending it (cancelled here, deadline, transport error)."""


class _Pending:
    __slots__ = ("call", "delay", "request_id", "retries")

    def __init__(self, request_id: str, call: OpenCall) -> None:
        self.request_id = request_id
        self.call = call
        self.delay = RETRY_S
        self.retries = 0


class StopRequests:
    """Sends `send(request_id, first)` for each abandoned call until the call has ended."""

    def __init__(
        self,
        send: Callable[[str, bool], Awaitable[None]],
        background: set[asyncio.Task[None]],
        concurrency: int = CONCURRENCY,
    ) -> None:
        self._send = send
        self._background = background
        self._concurrency = concurrency
        self._queue: deque[_Pending] = deque()
        self._senders = 0
        self._closed = False

    def stop(self, request_id: str, call: OpenCall) -> None:
        """Stop the generation behind `call` (request id `request_id`), again and again until the call ends."""
        self._queue.append(_Pending(request_id, call))
        self._start_senders()

    def close(self) -> None:
        """Repeat nothing more (the channel is closing); the stops already asked for still go out."""
        self._closed = True

    def _start_senders(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue and self._senders < self._concurrency:
            self._senders += 1
            task = loop.create_task(self._send_queued())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _send_queued(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                pending = self._queue.popleft()
                if pending.retries and not self._still_wanted(pending):
                    continue
                await self._send(pending.request_id, pending.retries == 0)
                if self._still_wanted(pending):
                    loop.call_later(pending.delay, self._again, pending)
        finally:
            self._senders -= 1

    @staticmethod
    def _still_wanted(pending: _Pending) -> bool:
        """Another stop may still be needed: the call is open, or was cut here within the first 2 s."""
        call = pending.call
        return not call.ended or (call.broken and pending.retries < FAST_RETRIES)

    def _again(self, pending: _Pending) -> None:
        if self._closed or not self._still_wanted(pending):
            return
        pending.retries += 1
        if pending.retries >= FAST_RETRIES:
            pending.delay = min(pending.delay * 2, MAX_RETRY_S)
        self._queue.append(pending)
        self._start_senders()
