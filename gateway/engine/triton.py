"""The Triton engine: `ModelStreamInfer` requests to the ensemble, BLS or engine model.

Ensemble and BLS requests go over a few long-lived streams that they share (`upstream_streams`, shared_streams):
a request is one write there, with no call to set up or keep open. Those requests are ended with stop requests
anyway (below), so a call of their own would buy nothing. A request to the engine model itself (direct mode)
keeps a call of its own, whose cancel stops the engine within a step, queued or running, and whose responses,
which come in bursts of one per request per engine step, grpc reads in parallel across calls. So does a request
that carries trace context (gRPC metadata belongs to a call, not to a message) or whose id is already open on the
streams, and every request with `upstream_streams` 0. Such a call is made as unary-stream (one request, then the
responses): the request, its metadata and the half-close leave in one batch, where the stub's stream-stream call
takes three (open, write, done_writing), each a round trip through grpc's completion queue.

Start-up never fails because Triton is down: a background task watches readiness (for /health/ready) and
(re)reads the model's config when it becomes ready; until the model is known, requests fail fast with 503.
At most `max_outstanding` calls are open at once (upstream_slots; by default twice the engine model's
`max_batch_size` as Triton declares it, shared by the workers); the others wait in the gateway.
Closing a generation early cancels a direct call to `tensorrt_llm`; an ensemble or BLS call, which a cancel
does not stop (TRITON_INTERFACE.md §6), gets `stop=true` requests with the same request id to `tensorrt_llm`
until it has ended by itself (detached_stream, stop_requests), whether it has a call of its own or not. A request
that needs special tokens in its text, from an ensemble or BLS whose postprocessing drops them, calls
`tensorrt_llm` directly (see special_tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import grpc
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from gateway.engine.base import Delta, EngineCapabilities, EngineInfo, GenerationRequest
from gateway.engine.call_guard import CallGuard
from gateway.engine.codecs import (
    ResponseDecoder,
    UpstreamCodec,
    bls_streams_through_exec,
    codec_for,
    guided_backend_of,
)
from gateway.engine.detached_stream import DetachedStream
from gateway.engine.shared_streams import SharedCall, SharedStreams
from gateway.engine.special_tokens import marker_codec, postprocessing_model, skips_special_tokens
from gateway.engine.stop_requests import StopRequests, StopTarget
from gateway.engine.tensors import FINAL_RESPONSE_PARAMETER
from gateway.engine.upstream_errors import translate_rpc_error, translate_stream_error
from gateway.engine.upstream_slots import UpstreamSlots, limit_for_batch
from gateway.errors import ConfigurationError, GatewayError, UpstreamTimeoutError, UpstreamUnavailableError
from gateway.telemetry.tracing import start_span, trace_headers_of
from gateway.telemetry.upstream_metrics import SlotMetrics

logger = logging.getLogger(__name__)

STREAM_INFER_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"
# An abandoned ensemble/BLS call that stop requests have not ended by then is cancelled (a Triton that ignores
# them must not hold the call and its slot for ever; cancelling earlier, and so many at once, risks a crash).
ABANDONED_CALL_DEADLINE_S = 30.0

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect soon after Triton comes back (gRPC's default backoff grows to two minutes).
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


@dataclass(frozen=True)
class TritonEngineConfig:
    """Where the upstream is and which model to call."""

    url: str
    model: str = "ensemble"
    engine_model: str = "tensorrt_llm"
    health_interval_s: float = 2.0
    health_timeout_s: float = 1.0  # deadline of each readiness probe
    rpc_timeout_s: float = 5.0
    first_token_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    request_timeout_s: float | None = None
    engine_logits: bool = False  # the engine gathers generation/context logits (top logprobs, prompt logprobs)
    kv_block_size: int = 64  # tokens per KV-cache block (cached_tokens from kv_cache_reused_blocks)
    max_outstanding: int | None = None  # calls open at once at this upstream (None: no limit)
    # The limit follows the engine model's max_batch_size once Triton has declared it (max_outstanding until
    # then, and where it declares none), this process's share of it when `workers` processes call the upstream.
    outstanding_from_engine: bool = False
    workers: int = 1
    stream_interval: int = 1  # a streamed request's responses per consumer wake-up, after the first (DetachedStream)
    upstream_streams: int = 4  # long-lived streams for ensemble/BLS requests (shared_streams); 0: a call each


class TritonEngine:
    """Engine over a Triton TensorRT-LLM ensemble (or `tensorrt_llm_bls`) reached by gRPC."""

    def __init__(
        self, config: TritonEngineConfig, tokenizer: Any | None = None, slot_metrics: SlotMetrics | None = None
    ) -> None:
        self.config = config
        self._tokenizer = tokenizer  # needed to call tensorrt_llm directly (direct mode)
        self._channel: grpc.aio.Channel | None = None
        self._stub: service_pb2_grpc.GRPCInferenceServiceStub | None = None
        self._stream_infer: grpc.aio.UnaryStreamMultiCallable | None = None
        self._shared: SharedStreams | None = None  # None: a call per request
        self._codec: UpstreamCodec | None = None
        self._marker_codec: UpstreamCodec | None = None  # direct calls for text with special tokens kept
        self._capabilities: EngineCapabilities | None = None  # of the codecs, worked out once per config read
        self._stop_targets: tuple[StopTarget, ...] = ()  # the engine model's first
        self._engine_stoppable = False  # an ensemble/BLS whose engine model takes stops: its requests may share
        self._server_version: str | None = None
        self._ready = False
        self._failed_polls = 0
        self._watcher: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._active: set[CallGuard] = set()
        self._slots = UpstreamSlots(config.max_outstanding, slot_metrics)
        self._stops = StopRequests(self._send_stop, self._background)

    # ---- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the channel and start watching readiness (returns at once even if Triton is down)."""
        self._channel = grpc.aio.insecure_channel(self.config.url, options=CHANNEL_OPTIONS)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._stream_infer = self._channel.unary_stream(
            STREAM_INFER_METHOD,
            # Calls are given the serialized request: grpc.aio keeps what it is given for the whole call, and the
            # bytes take less memory than the protobuf message for a stream that stays open (~5 KB per stream).
            request_serializer=None,
            response_deserializer=service_pb2.ModelStreamInferResponse.FromString,
        )
        if self.config.upstream_streams > 0:
            open_stream = self._channel.stream_stream(
                STREAM_INFER_METHOD,
                request_serializer=None,
                response_deserializer=service_pb2.ModelStreamInferResponse.FromString,
            )
            self._shared = SharedStreams(open_stream, self.config.upstream_streams)
        await self._refresh()
        self._watcher = asyncio.create_task(self._watch(), name="triton-health")

    async def close(self) -> None:
        """Stop the watcher, let pending stop requests finish briefly, close the channel."""
        self._stops.close()
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._background:
            await asyncio.wait(self._background, timeout=2.0)
        if self._shared is not None:
            self._shared.close()
        if self._channel:
            await self._channel.close()

    def info(self) -> EngineInfo:
        """Readiness and identity of the upstream."""
        return EngineInfo(
            upstream=f"triton grpc://{self.config.url}",
            mode=self._codec.mode if self._codec else None,
            model=self.config.model,
            ready=self._ready,
            server_version=self._server_version,
        )

    def capabilities(self) -> EngineCapabilities | None:
        """What the upstream model can do (None until its config has been read)."""
        return self._capabilities

    async def _watch(self) -> None:
        while True:
            if self._failed_polls != 1:  # one probe went unanswered: confirm at once, so a hung server leaves soon
                await asyncio.sleep(self.config.health_interval_s)
            await self._refresh()

    async def _refresh(self) -> None:
        assert self._stub is not None
        # Triton answers readiness from its gRPC threads, in milliseconds even while every model instance is busy;
        # a server that has not answered within this short deadline, and sent no generation a response meanwhile,
        # is hung (SIGSTOPped, swapping, wedged). One that streams tokens is alive, however slow its answer.
        timeout = self.config.health_timeout_s
        try:
            server_ready = await self._stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=timeout)
            model_ready = await self._stub.ModelReady(
                service_pb2.ModelReadyRequest(name=self.config.model), timeout=timeout
            )
            ready = server_ready.ready and model_ready.ready
            if ready and (not self._ready or self._codec is None):
                await self._discover()
            self._failed_polls = 0
        except grpc.aio.AioRpcError as exc:
            busy = exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED and self._streamed_within(timeout)
            self._failed_polls = 0 if busy else self._failed_polls + 1
            # Unreachable is final at once; no answer in time must happen twice in a row (the second probe follows
            # at once): a hung server leaves the routing candidates within interval + 2 x timeout (2-4 s).
            ready = self._ready and exc.code() != grpc.StatusCode.UNAVAILABLE and self._failed_polls < 2
            if not ready and self._ready:
                logger.warning("Triton at %s is not reachable: %s", self.config.url, exc.code().name)
        except ConfigurationError as exc:
            logger.error("%s", exc)
            ready = False
        if ready and not self._ready:
            logger.info("upstream model %s at %s is ready", self.config.model, self.config.url)
        self._ready = ready

    def _streamed_within(self, seconds: float) -> bool:
        """Whether one of this upstream's generations got a response in the last `seconds`."""
        since = asyncio.get_running_loop().time() - seconds
        return any(guard.last_response_at >= since for guard in self._active)

    async def _discover(self) -> None:
        """Read the model's declared interface (and the engine model's, for stop requests)."""
        assert self._stub is not None
        timeout = self.config.rpc_timeout_s
        metadata = await self._stub.ServerMetadata(service_pb2.ServerMetadataRequest(), timeout=timeout)
        self._server_version = metadata.version
        config = await self._stub.ModelConfig(service_pb2.ModelConfigRequest(name=self.config.model), timeout=timeout)
        engine_config = config.config
        if config.config.name != self.config.engine_model:
            try:
                reply = await self._stub.ModelConfig(
                    service_pb2.ModelConfigRequest(name=self.config.engine_model), timeout=timeout
                )
                engine_config = reply.config
            except grpc.aio.AioRpcError:
                engine_config = None
                logger.warning(
                    "no '%s' model: generations cannot be stopped upstream when a client leaves, and guided "
                    "decoding is taken as not configured",
                    self.config.engine_model,
                )
        self._resize_slots(engine_config)
        guided = engine_config is not None and guided_backend_of(engine_config)
        options: dict[str, Any] = {
            "engine_logits": self.config.engine_logits,
            "guided_backend": guided,
            "kv_block_size": self.config.kv_block_size,
        }
        keeps_special = False
        if config.config.name != self.config.engine_model:
            keeps_special = await self._postprocessing_keeps_special_tokens(config.config)
        self._codec = codec_for(config.config, self._tokenizer, keeps_special_tokens=keeps_special, **options)
        if self._codec.mode == "bls" and bls_streams_through_exec(config.config):
            logger.warning(
                "'%s' calls '%s' through exec(decoupled=True), which can deadlock Triton's Python backend under "
                "load: set its engine_grpc_url parameter to Triton's own gRPC address (triton_repo/README.md, "
                "Known defects)",
                self.config.model,
                self.config.engine_model,
            )
        self._marker_codec = None
        if self._codec.mode != "direct" and not keeps_special:
            self._marker_codec = self._direct_codec_for_markers(engine_config, options)
        capabilities = self._codec.capabilities()
        if self._marker_codec is not None:
            capabilities = dataclasses.replace(capabilities, special_tokens=True)
        self._capabilities = capabilities
        # tensorrt_llm stops the engine; a called model that declares a `stop` input gets the first stop too.
        self._stop_targets = ()
        self._engine_stoppable = False
        if not self._codec.stops_engine_on_cancel:
            engine = StopTarget.of(engine_config) if engine_config is not None else None
            called = StopTarget.of(config.config) if config.config.name != self.config.engine_model else None
            self._stop_targets = tuple(target for target in (engine, called) if target is not None)
            self._engine_stoppable = engine is not None

    def _resize_slots(self, engine_config: model_config_pb2.ModelConfig | None) -> None:
        """Follow the engine model's declared batch size, when the limit is derived from it."""
        if not self.config.outstanding_from_engine:
            return
        batch = engine_config.max_batch_size if engine_config is not None else 0
        limit = limit_for_batch(batch, self.config.workers) if batch > 0 else self.config.max_outstanding
        if limit == self._slots.limit:
            return
        self._slots.resize(limit)
        engine = self.config.engine_model
        why = f"twice {engine}'s max_batch_size {batch}" if batch > 0 else f"{engine} declares no max_batch_size"
        logger.info(
            "at most %s calls open at once at %s (%s, %d worker(s))", limit, self.config.url, why, self.config.workers
        )

    async def _postprocessing_keeps_special_tokens(self, config: model_config_pb2.ModelConfig) -> bool:
        """Whether the text of the upstream model keeps special tokens (its postprocessing says so)."""
        assert self._stub is not None
        name = postprocessing_model(config)
        try:
            reply = await self._stub.ModelConfig(
                service_pb2.ModelConfigRequest(name=name), timeout=self.config.rpc_timeout_s
            )
        except grpc.aio.AioRpcError:
            return False  # a postprocessing we cannot read is taken to drop them, as NVIDIA's does by default
        return not skips_special_tokens(reply.config)

    def _direct_codec_for_markers(
        self, engine_config: model_config_pb2.ModelConfig | None, options: dict[str, Any]
    ) -> UpstreamCodec | None:
        """The direct codec that requests needing special tokens use, when the engine model can be called."""
        if engine_config is None:
            return None  # already warned: no engine model
        codec, why_not = marker_codec(engine_config, self._tokenizer, **options)
        if codec is None:
            logger.warning(
                "the text of '%s' drops special tokens (skip_special_tokens) and '%s' cannot be called directly "
                "(%s): requests whose parsers need special tokens are refused",
                self.config.model,
                self.config.engine_model,
                why_not,
            )
        return codec

    # ---- generation ------------------------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        """Stream deltas for one request; leaving early stops the upstream generation."""
        codec = self._codec
        if request.keep_special_tokens and self._marker_codec is not None:
            codec = self._marker_codec
        # Readiness polling only feeds /health/ready: once the model is known, a request is tried (a Triton
        # that is down fails it at once with UNAVAILABLE), so a slow health poll under load rejects nothing.
        if codec is None or self._stream_infer is None:
            raise UpstreamUnavailableError(f"the upstream model '{self.config.model}' is not ready")
        config = self.config
        await self._take_slot()
        call, decoder, span = self._open_call(codec, request)
        guard = CallGuard(call, config.first_token_timeout_s, config.idle_timeout_s)
        self._active.add(guard)
        finished = False
        # Per sequence: tokens so far (engines do not say why a sequence stopped: max_tokens reached means
        # "length"; without counts this stays 0 and the OpenAI layer refines it with the tokenizer).
        completion_tokens = [0] * request.num_sequences
        # Read by a task of its own: a consumer that leaves never cancels the call mid-read. A cancel does not
        # stop an ensemble or BLS generation, and cancelled streams can crash Triton: those are ended with stop
        # requests instead (see detached_stream, stop_requests); direct calls are cancelled at once. The slot
        # is given back when the call is over upstream.
        # With a stream interval, a streamed request's responses are taken `stream_interval` at a time.
        wake_every = config.stream_interval if request.stream else 1
        batches = DetachedStream(call, self._background, guard, on_end=self._slots.release, wake_every=wake_every)
        try:
            async for batch in batches:
                # Responses that queued up while the client was being written to go out as one delta per sequence.
                merged: dict[int, Delta] = {}
                for response in batch:
                    if response.error_message:
                        raise translate_stream_error(response.error_message)
                    infer = response.infer_response  # a new wrapper object per access
                    delta = decoder.feed(infer)
                    sequence = delta.sequence_index
                    if delta.completion_tokens is not None and sequence < request.num_sequences:
                        completion_tokens[sequence] += delta.completion_tokens
                    earlier = merged.get(sequence)
                    if earlier is None:
                        merged[sequence] = delta
                    else:
                        earlier.extend(delta)
                    final = infer.parameters.get(FINAL_RESPONSE_PARAMETER)
                    if final is not None and final.bool_param:
                        # The final flag ends every sequence at once (there is no per-sequence end marker).
                        finished = True
                        for last in _final_deltas(merged, decoder, completion_tokens, request.max_tokens):
                            yield last
                        return
                for delta in merged.values():
                    if delta.text or delta.completion_tokens or delta.logprobs or delta.prompt_logprobs:
                        yield delta
            raise translate_stream_error("the upstream closed the stream before the final response")
        except asyncio.CancelledError:
            if guard.error is not None:  # our own cancel (timeout, shutdown), not the consumer's
                raise guard.error from None
            raise
        except grpc.aio.AioRpcError as exc:
            if guard.error is not None:
                raise guard.error from exc
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise UpstreamTimeoutError(f"the request did not finish within {config.request_timeout_s:g} s") from exc
            raise translate_rpc_error(exc) from exc
        finally:
            guard.close()
            self._active.discard(guard)
            if not finished:
                self._stop_abandoned(batches, codec, request.request_id, call)
            if span is not None:
                span.set_attribute("triton.finished", finished)
                span.end()

    def _open_call(self, codec: UpstreamCodec, request: GenerationRequest) -> tuple[Any, ResponseDecoder, Any]:
        """Start the gRPC call (the slot is given back if that fails): the call, its decoder, its trace span."""
        assert self._stream_infer is not None
        try:
            message, decoder = codec.open(request)
            trace = dict(request.trace_headers)
            span = start_span(f"triton {self.config.model}", trace, {"triton.request_id": message.id})
            metadata = tuple(trace_headers_of(span, trace).items())
            # Only the serialized bytes stay alive while the stream is open (none at all on a shared stream).
            payload = message.SerializeToString()
            shared = self._shared
            timeout = self.config.request_timeout_s
            if (
                shared is not None
                and self._engine_stoppable
                and not codec.stops_engine_on_cancel  # a direct call's cancel stops the engine: it keeps it
                and not metadata
                and not shared.holds(message.id)
            ):
                call = shared.call(message.id, payload, timeout)
            else:
                call = self._stream_infer(payload, metadata=metadata or None, timeout=timeout)
        except BaseException:
            self._slots.release()
            raise
        return call, decoder, span

    async def _take_slot(self) -> None:
        """Wait for one of the upstream's `max_outstanding` slots (within the time-to-first-token limit)."""
        limit = self.config.first_token_timeout_s
        try:
            await self._slots.acquire(limit)
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"the upstream did not take the request within {limit:g} s: "
                f"{self._slots.in_use} requests are open there, its limit"
            ) from None

    def _stop_abandoned(self, batches: DetachedStream, codec: UpstreamCodec, request_id: str, call: Any) -> None:
        """The consumer left before the final response: end the generation upstream."""
        if isinstance(call, SharedCall) and call.answered:
            # Triton ended it (an error response, or the final one behind a failure here): a stop could only reach
            # a retry of the same request id (an evicted LoRA adapter's is sent again at once).
            return
        if codec.stops_engine_on_cancel:
            batches.abandon(grace_s=0.0)  # direct: the engine sees the cancel within a step
        elif not self._stop_targets:
            batches.abandon(grace_s=self.config.rpc_timeout_s)  # no engine model to stop: only a cancel is left
        else:
            # Never cancelled while the stops work: cancelling many ensemble streams crashes Triton 24.10.
            batches.abandon(grace_s=ABANDONED_CALL_DEADLINE_S)
            self._stops.stop(request_id, batches)

    def abort_all(self, error: GatewayError) -> int:
        """End every running generation with `error` (their upstream work is stopped); returns how many."""
        guards = list(self._active)
        for guard in guards:
            guard.abort(error)
        return len(guards)

    async def _send_stop(self, request_id: str, first: bool) -> None:
        """Send `stop=true` for this request id to the engine model (the first time also to the called model)."""
        if not self._stop_targets:
            return
        if first and len(self._stop_targets) > 1:
            # Not awaited: a busy BLS answers late, and the engine's stops must not wait behind it.
            task = asyncio.get_running_loop().create_task(self._stop_at(self._stop_targets[1], request_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        await self._stop_at(self._stop_targets[0], request_id)

    async def _stop_at(self, target: StopTarget, request_id: str) -> None:
        if self._stream_infer is None:
            return
        call = self._stream_infer(target.message(request_id), timeout=self.config.rpc_timeout_s)
        try:
            async for response in call:
                if response.error_message:
                    logger.warning("stop request %s refused: %s", request_id, response.error_message)
                final = response.infer_response.parameters.get(FINAL_RESPONSE_PARAMETER)
                if final is not None and final.bool_param:
                    break
        except grpc.aio.AioRpcError as exc:
            logger.warning("stop request %s failed: %s", request_id, exc.code().name)
        finally:
            call.cancel()


def _final_deltas(
    merged: dict[int, Delta], decoder: ResponseDecoder, completion_tokens: list[int], max_tokens: int
) -> list[Delta]:
    """The last delta of every sequence: what arrived with the final response, the decoder's rest, the reason."""
    for index, count in enumerate(completion_tokens):
        last = merged.pop(index, None) or Delta("", completion_tokens=0, sequence_index=index)
        last.text += decoder.flush(index)
        last.finish_reason = "length" if count >= max_tokens else "stop"
        merged[index] = last
    return list(merged.values())
