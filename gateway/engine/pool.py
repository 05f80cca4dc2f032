"""An Engine over a pool of upstream replicas of one model: route, count, eject, retry before the first token.

Requests and deltas pass through untouched; the pool only decides which upstream's engine serves a request.
A generation that fails for the upstream's sake (unreachable, broken stream) before any delta was yielded is
retried once on another upstream; once a delta has been yielded it never is, so nothing reaches a client twice.
A stop request for an ensemble or BLS generation is sent by the engine that ran it, over its own channel, so it
reaches the upstream that runs the generation. All upstreams of one model are one deployment: the model's
interface and capabilities are taken from any ready one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.engine.base import Delta, Engine, EngineCapabilities, EngineInfo, GenerationRequest
from gateway.engine.lora import EVICTED_MARKER
from gateway.engine.routing import (
    LoadBound,
    PolicyName,
    RouteKey,
    SessionAffinity,
    block_hashes,
    make_policy,
)
from gateway.engine.token_ids import TextEncoder
from gateway.engine.upstreams import EjectionPolicy, Upstream, UpstreamSet, UpstreamSource
from gateway.errors import GatewayError, UpstreamError, UpstreamUnavailableError
from gateway.telemetry import current_request
from gateway.telemetry.upstream_metrics import UpstreamMetrics

logger = logging.getLogger(__name__)

HEALTH_GAUGE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class PoolConfig:
    """How one model's pool routes and judges its upstreams."""

    model: str  # the served model name (metric label)
    triton_model: str = "ensemble"
    policy: PolicyName = "least_outstanding"
    block_size: int = 64  # tokens per KV-cache block (TensorRT-LLM's tokens_per_block)
    bound: LoadBound = field(default_factory=LoadBound)  # how full the affinity policies let an upstream get
    session_affinity: bool = True  # requests with a session id header are routed by it
    session_from_user: bool = False  # and so are requests with a `user` (off: one user may run many chats)
    ejection: EjectionPolicy = field(default_factory=EjectionPolicy)
    dns_interval_s: float = 10.0


def upstream_fault(error: GatewayError) -> bool:
    """Whether a failure counts against the upstream (not the request's values, not our own shutdown)."""
    return isinstance(error, UpstreamError) and error.status in (500, 503, 504)


def lora_evicted(request: GenerationRequest, error: GatewayError) -> bool:
    """Whether the upstream refused a request without adapter weights because it no longer holds the adapter."""
    return request.lora is not None and request.lora.weights is None and EVICTED_MARKER in error.message


def retryable(error: GatewayError) -> bool:
    """Failures worth one more try elsewhere: unreachable or broken, not slow (a timeout already took its time)."""
    return isinstance(error, UpstreamError) and error.status in (500, 503)


class UpstreamPool:
    """Engine over several Triton upstreams of one model (see the module doc)."""

    def __init__(
        self,
        config: PoolConfig,
        sources: list[UpstreamSource],
        engine_factory: Callable[[str], Engine],
        tokenizer: Any | None = None,
        metrics: UpstreamMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._sources = sources
        self._policy = make_policy(config.policy, config.bound)
        self._sessions = SessionAffinity(config.bound)
        self._encoder = TextEncoder.of(tokenizer) if tokenizer is not None else None  # prompt blocks' ids
        self._metrics = metrics
        self._upstreams = UpstreamSet(sources, engine_factory, config.ejection, config.dns_interval_s, clock)
        self._upstreams.on_change = self._on_change
        self._gauges: asyncio.Task[None] | None = None

    @property
    def upstreams(self) -> list[Upstream]:
        """The current upstreams."""
        return self._upstreams.upstreams

    # ---- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve the upstreams and start their engines (returns even when they are down)."""
        await self._upstreams.start()
        if self._metrics is not None:
            self._gauges = asyncio.create_task(self._publish_health(), name="upstream-health-gauges")

    async def close(self) -> None:
        """Close every upstream's engine."""
        if self._gauges is not None:
            self._gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gauges
        await self._upstreams.close()

    def info(self) -> EngineInfo:
        """Ready when any upstream is; mode and version from a ready one."""
        infos = [u.engine.info() for u in self.upstreams]
        ready = [info for info in infos if info.ready]
        known = ready[0] if ready else (infos[0] if infos else None)
        return EngineInfo(
            upstream="triton grpc://" + ",".join(s.text for s in self._sources),
            model=self.config.triton_model,
            ready=bool(ready),
            mode=known.mode if known else None,
            server_version=known.server_version if known else None,
        )

    def capabilities(self) -> EngineCapabilities | None:
        """A ready upstream's capabilities (one deployment: they are all the same), else any known."""
        known = None
        for upstream in self.upstreams:
            capabilities = upstream.engine.capabilities()
            if capabilities is not None:
                if upstream.available():
                    return capabilities
                known = known or capabilities
        return known

    def abort_all(self, error: GatewayError) -> int:
        """End every running generation on every upstream."""
        return sum(u.engine.abort_all(error) for u in self.upstreams)

    # ---- generation ------------------------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        """Stream from the chosen upstream; retry once elsewhere if it fails before the first delta."""
        key = await self.route_key(request)
        failed: Upstream | None = None
        resend_lora = False
        while True:
            if not resend_lora:
                upstream, reason = self.choose(key, failed)
            attempt = self._lora_for(upstream, request, resend_lora)
            yielded = finished = resend_lora = False
            prompt_tokens = cached_tokens = None
            self._begin(upstream)
            try:
                async with contextlib.aclosing(upstream.engine.generate(attempt)) as deltas:
                    async for delta in deltas:
                        yielded = True
                        finished = finished or delta.finish_reason is not None
                        prompt_tokens = delta.prompt_tokens if delta.prompt_tokens is not None else prompt_tokens
                        cached_tokens = delta.cached_tokens if delta.cached_tokens is not None else cached_tokens
                        # The consumer may close this generator once a finish arrived (it has all it needs):
                        # a success is recorded in `finally`, not after the loop.
                        yield delta
                return
            except GatewayError as exc:
                if not yielded and lora_evicted(attempt, exc):
                    assert attempt.lora is not None
                    upstream.loras.discard(attempt.lora.task_id)
                    resend_lora = True  # the same upstream again, with the adapter's weights
                    continue
                if not upstream_fault(exc):
                    raise
                self._record_failure(upstream)
                if yielded or failed is not None or not retryable(exc) or not self._others(upstream):
                    raise
                logger.warning("retrying %s elsewhere: %s failed: %s", request.request_id, upstream.address, exc)
                if self._metrics is not None:
                    self._metrics.retries.labels(self.config.model, upstream.address).inc()
                failed = upstream
            finally:
                if finished:
                    upstream.succeeded()
                    if attempt.lora is not None:
                        upstream.loras.add(attempt.lora.task_id)
                    self._record_reuse(reason, prompt_tokens, cached_tokens)
                await self._end(upstream)

    @staticmethod
    def _lora_for(upstream: Upstream, request: GenerationRequest, with_weights: bool) -> GenerationRequest:
        """The request as sent to `upstream`: an adapter's weights only where it does not hold them yet."""
        lora = request.lora
        if lora is None or with_weights or lora.task_id not in upstream.loras:
            return request
        return replace(request, lora=replace(lora, weights=None))

    async def route_key(self, request: GenerationRequest) -> RouteKey:
        """What affinity routing uses: the client's session id (when it sent one) and the prompt's blocks.

        Tokenizing costs about a microsecond per prompt token, so it runs in a thread (the Rust tokenizer
        releases the GIL) instead of holding up every stream on the event loop."""
        context = current_request()
        session: str | None = None
        if context is not None and self.config.session_affinity:
            session = context.session or (context.user if self.config.session_from_user else None)
        blocks: tuple[int, ...] = ()
        if self._policy.needs_blocks and session is None and self._encoder is not None:
            blocks = await asyncio.to_thread(self._prompt_blocks, request.prompt)
        return RouteKey(blocks, session)

    def _prompt_blocks(self, prompt: str) -> tuple[int, ...]:
        assert self._encoder is not None  # only called when there is one
        return block_hashes(self._encoder.ids(prompt), self.config.block_size)

    def choose(self, key: RouteKey, exclude: Upstream | None = None) -> tuple[Upstream, str]:
        """The upstream for a request with this key (not `exclude`) and why, recorded in metrics and the log."""
        candidates = [u for u in self.upstreams if u is not exclude and u.available()]
        if not candidates:  # every ready one is ejected: try them anyway rather than refuse everything
            candidates = [u for u in self.upstreams if u is not exclude and u.ready()]
        if not candidates:
            raise UpstreamUnavailableError(f"no upstream of model '{self.config.model}' is ready")
        if key.session is not None:
            chosen, reason = self._sessions.choose(candidates, key.session)
            policy = "session"
        else:
            chosen, reason = self._policy.choose(candidates, key)
            policy = self._policy.name
        if exclude is not None:
            reason = "retry"
        if self._metrics is not None:
            self._metrics.decisions.labels(self.config.model, policy, reason).inc()
        assert isinstance(chosen, Upstream)
        context = current_request()
        if context is not None:
            context.upstreams.append(chosen.address)
        return chosen, reason

    def _others(self, upstream: Upstream) -> bool:
        return any(u is not upstream and u.ready() for u in self.upstreams)

    def _begin(self, upstream: Upstream) -> None:
        upstream.in_flight += 1
        if self._metrics is not None:
            labels = (self.config.model, upstream.address)
            self._metrics.requests.labels(*labels).inc()
            self._metrics.in_flight.labels(*labels).inc()

    async def _end(self, upstream: Upstream) -> None:
        upstream.in_flight -= 1
        if self._metrics is not None:
            self._metrics.in_flight.labels(self.config.model, upstream.address).dec()
        await self._upstreams.release(upstream)

    def _record_reuse(self, reason: str, prompt_tokens: int | None, cached_tokens: int | None) -> None:
        """How much of the prompt the chosen upstream had cached, by the decision's reason (where reported)."""
        if self._metrics is None or prompt_tokens is None or cached_tokens is None:
            return
        self._metrics.routed_prompt_tokens.labels(self.config.model, reason).inc(prompt_tokens)
        self._metrics.cached_tokens.labels(self.config.model, reason).inc(min(cached_tokens, prompt_tokens))

    def _record_failure(self, upstream: Upstream) -> None:
        ejected = upstream.failed()
        if self._metrics is not None:
            labels = (self.config.model, upstream.address)
            self._metrics.failures.labels(*labels).inc()
            if ejected is not None:
                self._metrics.ejections.labels(*labels).inc()
                self._metrics.healthy.labels(*labels).set(0)

    def _on_change(self, upstream: Upstream, added: bool) -> None:
        if self._metrics is None:
            return
        if added:
            self._metrics.healthy.labels(self.config.model, upstream.address).set(0)
        else:
            for gauge in (self._metrics.healthy, self._metrics.slot_limit):
                with contextlib.suppress(KeyError):
                    gauge.remove(self.config.model, upstream.address)

    async def _publish_health(self) -> None:
        assert self._metrics is not None
        while True:
            for upstream in self.upstreams:
                self._metrics.healthy.labels(self.config.model, upstream.address).set(int(upstream.available()))
            await asyncio.sleep(HEALTH_GAUGE_INTERVAL_S)
