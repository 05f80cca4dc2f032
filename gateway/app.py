"""The FastAPI application: routers, error handlers, and the engine's lifespan."""

from __future__ import annotations

import gc
import inspect
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from gateway import __version__
from gateway.api import (
    chat,
    completions,
    conversations,
    health,
    messages,
    metrics,
    models,
    responses,
    stored_responses,
    usage,
)
from gateway.api.admission import AdmissionLimiter, AdmissionMiddleware, DrainState
from gateway.api.auth import ApiKeyMiddleware
from gateway.api.background import BackgroundRunner
from gateway.api.connections import GUARD_STATE_KEY, ConnectionGuard, connection_limit
from gateway.api.drain import DrainCoordinator
from gateway.api.errors import ErrorShapes, install_error_handlers
from gateway.api.head import HeadAsGetMiddleware
from gateway.api.middleware import RequestTelemetryMiddleware
from gateway.api.openapi import install_openapi
from gateway.api.request_body import RequestBodyMiddleware
from gateway.api.store_access import StoreService, store_config
from gateway.api.tenancy import TenancyMiddleware, tenants_from_settings
from gateway.api.usage_ledger import StoreLedger
from gateway.config import Settings
from gateway.core.guide_checker import GuideChecker
from gateway.core.images import ImageLimits, ImageLoader, image_placeholder_for
from gateway.core.model_parsers import resolve_parsers, special_markers
from gateway.core.schema_bounds import GuideLimits
from gateway.core.served_model import ModelRegistry, ServedModel
from gateway.core.tokens import ChatTemplate, TokenCounter, load_tokenizer
from gateway.engine.base import LoraAdapter
from gateway.engine.lora import AdapterEngine, LoraWeights
from gateway.engine.pool import PoolConfig, UpstreamPool
from gateway.engine.routing import LoadBound
from gateway.engine.triton import TritonEngine, TritonEngineConfig
from gateway.engine.upstream_slots import FALLBACK_LIMIT
from gateway.engine.upstreams import EjectionPolicy
from gateway.errors import ConfigurationError
from gateway.models_file import ModelEntry, ModelsFile
from gateway.protocols.sealing import Sealer, deployment_secret
from gateway.telemetry import GatewayMetrics, configure_logging
from gateway.telemetry.tracing import configure_tracing

logger = logging.getLogger(__name__)


# FastAPI 0.16x makes OpenTelemetry spans and metrics of its own once a provider is configured; the gateway makes
# its own (telemetry/tracing.py), so FastAPI's would be a second server span per request, and a check per request.
NO_FASTAPI_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def create_app(
    registry: ModelRegistry, settings: Settings | None = None, gateway_metrics: GatewayMetrics | None = None
) -> FastAPI:
    """An app serving the models of `registry`; their engines start and stop with the app. `gateway_metrics`
    is what the engines were built to record into, if any."""
    settings = settings or Settings()
    drain = DrainState()
    coordinator = DrainCoordinator(
        drain, settings.drain_timeout_s, lambda error: sum(m.engine.abort_all(error) for m in registry.all())
    )

    metrics_registry = gateway_metrics or GatewayMetrics()
    limit = connection_limit(settings.max_connections)
    guard = ConnectionGuard(settings.header_timeout_s, settings.body_timeout_s, limit, metrics_registry)
    checkers = list({id(model.guide_checker): model.guide_checker for model in registry.all()}.values())
    loaders = list({id(model.images): model.images for model in registry.all()}.values())
    store_service = StoreService(store_config(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        app.state.store = await store_service.start()
        app.state.background = BackgroundRunner(app.state.store, settings.background_lease_s)
        app.state.background.start()
        for model in registry.all():
            await model.engine.start()
        for checker in checkers:
            await checker.warm_up()  # the worker's xgrammar import, before the first request
        coordinator.install()
        if app.state.tenants is not None:
            await app.state.tenants.start()
        # Start-up leaves a few hundred thousand long-lived objects (transformers imports torch): frozen, a
        # full collection no longer walks them, so it stops pausing every stream for 100+ ms.
        gc.collect()
        gc.freeze()
        try:
            yield {GUARD_STATE_KEY: guard}  # uvicorn hands the lifespan state to the HTTP protocol
        finally:
            coordinator.cancel()
            await app.state.background.drain(settings.drain_timeout_s)  # SIGTERM: as long as streams get
            if app.state.tenants is not None:
                await app.state.tenants.close()  # before the store closes: the last usage flush
            for checker in checkers:
                checker.close()
            for loader in loaders:
                await loader.close()
            for model in registry.all():
                await model.engine.close()
            app.state.store = app.state.background = None
            await store_service.stop()

    app = FastAPI(title="trtllm-gateway", version=__version__, lifespan=lifespan, **NO_FASTAPI_TELEMETRY)
    app.state.registry = registry
    app.state.settings = settings
    app.state.metrics = metrics_registry
    app.state.drain = drain
    tenants = tenants_from_settings(settings, registry, metrics_registry.tenants, StoreLedger(app.state))
    app.state.tenants = tenants  # None without API keys
    # OpenAI's shape on every route but those of a protocol with its own.
    app.state.error_shapes = ErrorShapes(((messages.MESSAGES_PATH_PREFIX, messages.MESSAGES_ERRORS),))
    install_error_handlers(app)
    install_openapi(app, (messages.MESSAGES_OPENAPI_ERRORS,))
    app.state.sealer = Sealer(deployment_secret(settings.state_key))
    app.state.store = app.state.background = None  # opened by the lifespan
    routers = (chat.router, completions.router, messages.router, responses.router, stored_responses.router)
    for router in (*routers, conversations.router, models.router, usage.router, health.router, metrics.router):
        app.include_router(router)
    # add_middleware wraps: the last added runs first. Order seen by a request: telemetry (ids, metrics),
    # CORS, API key, tenancy (settles and counts what the key's requests used), the body (read whole, within the
    # size limit and the body timeout), admission, HEAD as GET.
    app.add_middleware(HeadAsGetMiddleware)
    limiter = None
    if settings.max_concurrent_requests is not None:
        limiter = AdmissionLimiter(
            settings.max_concurrent_requests,
            settings.max_queued_requests,
            settings.queue_timeout_s,
            metrics_registry.waiting,
            metrics_registry.saturation,
            settings.priority_aging_s,
        )
    app.add_middleware(AdmissionMiddleware, limiter=limiter, drain=drain)
    app.add_middleware(RequestBodyMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    if tenants is not None:
        app.add_middleware(TenancyMiddleware, tenants=tenants)
        app.add_middleware(ApiKeyMiddleware, keys=tenants.keys, protect_observability=settings.protect_observability)
    origins = settings.cors_origin_list()
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(RequestTelemetryMiddleware, metrics=metrics_registry, session_header=settings.session_header)
    return app


def models_of(settings: Settings) -> ModelsFile:
    """The models file, or the one entry the single-model flags describe."""
    if settings.models_file is None:
        return ModelsFile.from_settings(settings)
    if settings.tokenizer is not None:
        raise ConfigurationError("--models-file and --tokenizer cannot be combined: the file names each tokenizer")
    return ModelsFile.load(settings.models_file)


def build_registry(settings: Settings, metrics: GatewayMetrics | None = None) -> ModelRegistry:
    """The served models of the settings, each with a pool of Triton upstreams behind it."""
    models_file = models_of(settings)
    models = []
    aliases: dict[str, str] = {}
    checker = GuideChecker(guide_limits(settings), settings.guide_check_workers)
    images = ImageLoader(image_limits(settings))
    for index, entry in enumerate(models_file.models):
        model = _served_model(settings, models_file, entry, index, metrics, checker, images)
        models += [model, *_adapter_models(model, entry, index)]
        aliases.update(dict.fromkeys(entry.aliases, entry.name))
    return ModelRegistry(models, aliases)


def _adapter_models(base: ServedModel, entry: ModelEntry, index: int) -> list[ServedModel]:
    """A model id per LoRA adapter of the entry: the base model's tokenizer, template, limits and pool."""
    adapters = []
    for position, adapter in enumerate(entry.lora_adapters):
        try:
            weights = LoraWeights.load(adapter.folder)
        except ConfigurationError as exc:
            where = f"models[{index}] ('{entry.name}'), field 'lora_adapters.{position}.folder'"
            raise ConfigurationError(f"{where}: {exc}") from exc
        engine = AdapterEngine(base.engine, LoraAdapter(adapter.task_id, weights))
        adapters.append(replace(base, name=adapter.name, engine=engine))
    return adapters


def guide_limits(settings: Settings) -> GuideLimits:
    """The bounds on guides and tools the settings ask for."""
    return GuideLimits(
        max_bytes=settings.max_guide_bytes,
        max_depth=settings.max_guide_depth,
        max_refs=settings.max_guide_refs,
        max_enum_values=settings.max_guide_enum_values,
        max_properties=settings.max_guide_properties,
        max_tools=settings.max_tools,
        max_tools_bytes=settings.max_tools_bytes,
        check_timeout_s=settings.guide_check_timeout_s,
    )


def image_limits(settings: Settings) -> ImageLimits:
    """The bounds on request images the settings ask for."""
    networks = []
    for text in (settings.image_fetch_allow_networks or "").split(","):
        if text.strip():
            try:
                networks.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError as exc:
                raise ConfigurationError(f"--image-fetch-allow-networks: {exc}") from exc
    return ImageLimits(
        max_bytes=settings.image_max_bytes,
        max_pixels=settings.image_max_pixels,
        max_per_request=settings.max_images,
        fetch_timeout_s=settings.image_fetch_timeout_s,
        allowed_networks=tuple(networks),
        cache_bytes=settings.image_cache_mb * 1024 * 1024,
    )


def _served_model(
    settings: Settings,
    models_file: ModelsFile,
    entry: ModelEntry,
    index: int,
    metrics: GatewayMetrics | None,
    checker: GuideChecker,
    images: ImageLoader,
) -> ServedModel:
    where = f"models[{index}] ('{entry.name}')" if settings.models_file else ""
    try:
        tokenizer = load_tokenizer(entry.tokenizer)
        template = ChatTemplate(tokenizer, entry.chat_template)
    except (ConfigurationError, OSError) as exc:
        field = "chat_template" if isinstance(exc, OSError) else "tokenizer"
        raise ConfigurationError(f"{where}, field '{field}': {exc}" if where else str(exc)) from exc
    tool_parser, reasoning_parser = resolve_parsers(
        entry.tool_call_parser, entry.reasoning_parser, template.source, where
    )
    block_size = entry.routing.block_size or settings.kv_block_size
    slots_from_engine = settings.max_upstream_requests is None

    def triton_engine(address: str) -> TritonEngine:
        engine_config = TritonEngineConfig(
            url=address,
            model=entry.triton_model,
            engine_model=entry.engine_model,
            health_interval_s=models_file.health.interval_s,
            health_timeout_s=models_file.health.timeout_s,
            rpc_timeout_s=settings.connect_timeout_s,
            first_token_timeout_s=settings.first_token_timeout_s,
            idle_timeout_s=settings.idle_timeout_s,
            request_timeout_s=settings.request_timeout_s,
            engine_logits=entry.engine_logits,
            kv_block_size=block_size,
            max_outstanding=FALLBACK_LIMIT if slots_from_engine else (settings.max_upstream_requests or None),
            outstanding_from_engine=slots_from_engine,
            workers=settings.workers,
            stream_interval=settings.stream_interval,
            upstream_streams=settings.upstream_streams,
        )
        slot_metrics = metrics.upstreams.slots(entry.name, address) if metrics is not None else None
        return TritonEngine(engine_config, tokenizer, slot_metrics)

    health = models_file.health
    pool_config = PoolConfig(
        model=entry.name,
        triton_model=entry.triton_model,
        policy=entry.routing.policy or settings.routing,
        block_size=block_size,
        bound=LoadBound(entry.routing.load_factor, entry.routing.load_floor),
        session_from_user=settings.session_from_user,
        ejection=EjectionPolicy(health.eject_after_failures, health.eject_base_s, health.eject_max_s),
        dns_interval_s=health.dns_interval_s,
    )
    engine = UpstreamPool(
        pool_config, entry.sources(), triton_engine, tokenizer, metrics.upstreams if metrics is not None else None
    )
    return ServedModel(
        name=entry.name,
        engine=engine,
        chat_template=template,
        counter=TokenCounter(tokenizer),
        default_max_tokens=entry.default_max_tokens,
        max_tokens_limit=entry.max_tokens_limit,
        max_prompt_tokens=entry.max_prompt_tokens or settings.max_prompt_tokens,
        max_n=entry.max_n,
        tool_parser=tool_parser,
        reasoning_parser=reasoning_parser,
        compact_json_guides=entry.guided_json_whitespace == "compact",
        special_markers=special_markers(tokenizer, tool_parser, reasoning_parser),
        guide_checker=checker,
        images=images,
        image_placeholder=image_placeholder_for(tokenizer, entry.image_placeholder),
    )


def app_from_settings(settings: Settings) -> FastAPI:
    """The app for these settings."""
    configure_tracing(settings.otlp_endpoint)
    gateway_metrics = GatewayMetrics()
    return create_app(build_registry(settings, gateway_metrics), settings, gateway_metrics)


def app_from_environment() -> FastAPI:
    """App factory for worker processes: settings from GATEWAY_* variables (set by the parent)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return app_from_settings(settings)
