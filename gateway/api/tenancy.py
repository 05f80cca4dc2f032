"""Tenants at work on a request: which models its key may use, the limits' admission and settlement, accounting.

A generation request is admitted against its key's limits after it is planned (its prompt tokens are known) and
before any upstream work starts: one backend call reserves everything at once, or the request gets OpenAI's 429.
When the response has ended, however it ended, `TenancyMiddleware` settles the reservation with what the
choices really used (in a task: the client waits for nothing) and counts the usage for the tenant; a background
response, which outlives its request, is finished by its run instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.auth import api_key_of
from gateway.api.rate_limits import rate_limit_headers, refusal_error
from gateway.api.state import registry_of
from gateway.config import Settings
from gateway.core.choices import ChoiceRun, spent_usage
from gateway.core.served_model import ModelRegistry, ServedModel, unknown_model
from gateway.core.usage import Usage
from gateway.telemetry import current_request
from gateway.telemetry.tenant_metrics import TenantMetrics
from gateway.tenants.keys import ApiKey, KeyRing, legacy_keys
from gateway.tenants.keys_file import load_keys_file
from gateway.tenants.keys_watcher import KeysWatcher
from gateway.tenants.limits import LimitsBackend, Periods, Reservation
from gateway.tenants.local_limits import LocalLimits
from gateway.tenants.redis_limits import RedisLimits
from gateway.tenants.usage import UsageKey, UsageLedger, UsageRecorder, day_of

logger = logging.getLogger(__name__)

TENANCY_SCOPE = "gateway.tenancy"
LONG_PROMPT_CHARS = 16_384  # longer prompts are counted in a thread (the Rust tokenizer releases the GIL)
SETTLE_WAIT_S = 5.0


@dataclass(slots=True)
class Admitted:
    """A generation request past its key's limits."""

    key: ApiKey
    reservation: Reservation | None  # None: nothing limited, or admitted unchecked


class Tenants:
    """The keys in force, the limits' backend, the usage recorder, and their metrics (one per app)."""

    def __init__(
        self,
        keys: KeyRing,
        backend: LimitsBackend,
        usage: UsageRecorder,
        metrics: TenantMetrics,
        watcher: KeysWatcher | None = None,
    ) -> None:
        self.keys = keys
        self.backend = backend
        self.usage = usage
        self.metrics = metrics
        self.watcher = watcher
        self._settling: set[asyncio.Task[None]] = set()
        self._sighup = False

    async def start(self) -> None:
        """Start the backend, the usage flushes and the keys file's watch (and SIGHUP)."""
        await self.backend.start()
        await self.usage.start()
        if self.watcher is not None:
            await self.watcher.start()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.watcher.request_reload)
                self._sighup = True

    async def close(self) -> None:
        """Let settlements finish, flush the usage, stop everything."""
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self.watcher is not None:
            await self.watcher.close()
        if self._settling:
            await asyncio.wait(self._settling, timeout=SETTLE_WAIT_S)
        await self.usage.close()
        await self.backend.close()

    async def admit(self, key: ApiKey, run: ChoiceRun, model: ServedModel) -> tuple[Admitted, dict[str, str]]:
        """Reserve the request against its key's limits: the admission and its rate-limit headers, or a 429."""
        if key.limits.unlimited:
            return Admitted(key, None), {}
        tokens = await reserved_tokens(run, model) if key.limits.counts_tokens else 0
        now = time.time()
        reservation = Reservation(secrets.token_hex(12), key.key_id, tokens, key.limits, Periods.at(now))
        verdict = await self.backend.admit(reservation, now)
        headers = rate_limit_headers(verdict)
        if verdict.refusal is not None:
            self.metrics.refusals.labels(key.tenant, verdict.refusal.value).inc()
            raise refusal_error(verdict, key, tokens)
        if verdict.unchecked:
            self.metrics.unchecked.inc()
        return Admitted(key, verdict.reservation), headers

    def finish(self, admitted: Admitted, used: Usage, model: str) -> None:
        """The request ended having used `used`: settle its reservation (in a task) and count its usage."""
        spent = used.prompt_tokens + used.completion_tokens
        if admitted.reservation is not None:
            task = asyncio.get_running_loop().create_task(self.backend.settle(admitted.reservation, spent))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
        key = admitted.key
        cached = used.cached_tokens or 0
        self.usage.record(UsageKey(day_of(time.time()), key.tenant, key.key_id, model), used.prompt_tokens,
                          cached, used.completion_tokens)  # fmt: skip
        tokens = self.metrics.tokens
        self.metrics.requests.labels(key.tenant, model).inc()
        tokens.labels(key.tenant, model, "prompt").inc(used.prompt_tokens)
        tokens.labels(key.tenant, model, "cached").inc(cached)
        tokens.labels(key.tenant, model, "completion").inc(used.completion_tokens)


async def reserved_tokens(run: ChoiceRun, model: ServedModel) -> int:
    """What a request reserves: each prompt's tokens (the model's tokenizer) and every choice's max_tokens."""
    prompts = {choice.prompt_index: choice.request.prompt for choice in run.choices}
    counted = 0
    for prompt in prompts.values():
        long = len(prompt) > LONG_PROMPT_CHARS
        counted += await asyncio.to_thread(model.counter.count, prompt) if long else model.counter.count(prompt)
    return counted + sum(choice.request.max_tokens for choice in run.choices)


def tenants_from_settings(
    settings: Settings, registry: ModelRegistry, metrics: TenantMetrics, ledger: UsageLedger
) -> Tenants | None:
    """The tenants of the settings' keys (the keys file and `--api-keys`), their usage kept in `ledger`; None when
    no key is configured."""
    legacy = legacy_keys(settings.api_key_list())
    if settings.keys_file is None and not legacy:
        return None
    names = {name: model.name for name, model in registry.names()}
    watcher = None
    ring = KeyRing(legacy)
    if settings.keys_file is not None:
        ring.replace(legacy | load_keys_file(settings.keys_file, names))
        watcher = KeysWatcher(ring, settings.keys_file, names, legacy, metrics)
    backend: LimitsBackend = LocalLimits()
    if settings.limits_url is not None:
        backend = RedisLimits(settings.limits_url, settings.limits_on_error, metrics)
    return Tenants(ring, backend, UsageRecorder(ledger), metrics, watcher)


def tenants_of(request: Request) -> Tenants | None:
    """The app's tenants (None without API keys)."""
    tenants: Tenants | None = getattr(request.app.state, "tenants", None)
    return tenants


def served_model(request: Request, name: str) -> ServedModel:
    """The model a request names, if its key may use it; a model it may not use is a 404 like an unknown one."""
    model = registry_of(request).get(name)
    key = api_key_of(request.scope)
    if key is not None and not key.may_use(model.name):
        raise unknown_model(name)
    return model


async def admit_generation(request: Request, run: ChoiceRun, model: ServedModel) -> dict[str, str]:
    """Admit a planned generation against its key's limits; its rate-limit headers (or a 429 is raised). The
    TenancyMiddleware finishes it when the response ends."""
    tenants = tenants_of(request)
    key = api_key_of(request.scope)
    if tenants is None or key is None:
        return {}
    admitted, headers = await tenants.admit(key, run, model)
    request.scope[TENANCY_SCOPE] = admitted
    return headers


async def admit_background(
    request: Request, run: ChoiceRun, model: ServedModel
) -> tuple[dict[str, str], Callable[[], None] | None]:
    """Admit a generation that outlives its request (a background response): its rate-limit headers (or a 429),
    and what to call once it has ended, however it ended (settles and counts it)."""
    tenants = tenants_of(request)
    key = api_key_of(request.scope)
    if tenants is None or key is None:
        return {}, None
    admitted, headers = await tenants.admit(key, run, model)
    return headers, lambda: tenants.finish(admitted, spent_usage(run.choices), model.name)


class TenancyMiddleware:
    """When an admitted generation's response has ended (completed, failed or abandoned): settle and count it."""

    def __init__(self, app: ASGIApp, tenants: Tenants) -> None:
        self.app = app
        self.tenants = tenants

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, then finish its tenancy."""
        try:
            await self.app(scope, receive, send)
        finally:
            admitted: Admitted | None = scope.get(TENANCY_SCOPE)
            if admitted is not None:
                context = current_request()
                choices = context.streams if context is not None else []
                model = context.model if context is not None else "unknown"
                self.tenants.finish(admitted, spent_usage(choices), model)
