"""The FastAPI application: routers, error handlers, and the engine's lifespan."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from gateway import __version__
from gateway.api import chat, completions, health, metrics, models
from gateway.api.admission import AdmissionLimiter, AdmissionMiddleware, DrainState
from gateway.api.auth import ApiKeyMiddleware
from gateway.api.body_limit import BodySizeLimitMiddleware
from gateway.api.drain import DrainCoordinator
from gateway.api.errors import install_error_handlers
from gateway.api.middleware import RequestTelemetryMiddleware
from gateway.api.openapi import install_openapi
from gateway.config import Settings
from gateway.engine.triton import TritonEngine, TritonEngineConfig
from gateway.errors import ConfigurationError
from gateway.openai.parsers import REASONING_PARSERS, TOOL_PARSERS, detect_parsers, markers_lost_to
from gateway.openai.served_model import ModelRegistry, ServedModel
from gateway.openai.tokens import ChatTemplate, TokenCounter, load_tokenizer
from gateway.telemetry import GatewayMetrics, configure_logging
from gateway.telemetry.tracing import configure_tracing

logger = logging.getLogger(__name__)


def create_app(registry: ModelRegistry, settings: Settings | None = None) -> FastAPI:
    """An app serving the models of `registry`; their engines start and stop with the app."""
    settings = settings or Settings()
    drain = DrainState()
    coordinator = DrainCoordinator(
        drain, settings.drain_timeout_s, lambda error: sum(m.engine.abort_all(error) for m in registry.all())
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for model in registry.all():
            await model.engine.start()
        coordinator.install()
        # Start-up leaves a few hundred thousand long-lived objects (transformers imports torch): frozen, a
        # full collection no longer walks them, so it stops pausing every stream for 100+ ms.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            coordinator.cancel()
            for model in registry.all():
                await model.engine.close()

    app = FastAPI(title="trtllm-gateway", version=__version__, lifespan=lifespan)
    app.state.registry = registry
    app.state.settings = settings
    app.state.metrics = metrics_registry = GatewayMetrics()
    app.state.drain = drain
    install_error_handlers(app)
    install_openapi(app)
    for router in (chat.router, completions.router, models.router, health.router, metrics.router):
        app.include_router(router)
    # add_middleware wraps: the last added runs first. Order seen by a request: telemetry (ids, metrics),
    # CORS, API key, body size, admission.
    limiter = None
    if settings.max_concurrent_requests is not None:
        limiter = AdmissionLimiter(
            settings.max_concurrent_requests,
            settings.max_queued_requests,
            settings.queue_timeout_s,
            metrics_registry.waiting,
            metrics_registry.saturation,
        )
    app.add_middleware(AdmissionMiddleware, limiter=limiter, drain=drain)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    keys = settings.api_key_list()
    if keys:
        app.add_middleware(ApiKeyMiddleware, keys=keys, protect_observability=settings.protect_observability)
    origins = settings.cors_origin_list()
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(RequestTelemetryMiddleware, metrics=metrics_registry)
    return app


def build_registry(settings: Settings) -> ModelRegistry:
    """The served model described by the settings, with a Triton engine behind it."""
    if settings.tokenizer is None:
        raise ConfigurationError(
            "--tokenizer (GATEWAY_TOKENIZER) is required: the model's Hugging Face tokenizer folder"
        )
    tokenizer = load_tokenizer(settings.tokenizer)
    template = ChatTemplate(tokenizer, settings.chat_template)
    tool_parser, reasoning_parser = resolve_parsers(settings, template.source)
    lost = markers_lost_to(special_token_texts(tokenizer), tool_parser, reasoning_parser)
    direct = settings.triton_model == "tensorrt_llm"
    if lost and not direct:
        logger.warning(
            "the parsers' markers %s are special tokens of the tokenizer: NVIDIA's postprocessing drops them with "
            "skip_special_tokens=true; set skip_special_tokens to false in postprocessing's config.pbtxt, or call "
            "tensorrt_llm directly (--triton-model tensorrt_llm), where the gateway keeps them",
            lost,
        )
    engine_config = TritonEngineConfig(
        url=settings.triton_url,
        model=settings.triton_model,
        engine_model=settings.triton_engine_model,
        rpc_timeout_s=settings.connect_timeout_s,
        first_token_timeout_s=settings.first_token_timeout_s,
        idle_timeout_s=settings.idle_timeout_s,
        request_timeout_s=settings.request_timeout_s,
        engine_logits=settings.engine_logits,
        keep_special_tokens=bool(lost) and direct,
    )
    engine = TritonEngine(engine_config, tokenizer)
    model = ServedModel(
        name=settings.model_name(),
        engine=engine,
        chat_template=template,
        counter=TokenCounter(tokenizer),
        default_max_tokens=settings.default_max_tokens,
        max_tokens_limit=settings.max_tokens_limit,
        max_prompt_tokens=settings.max_prompt_tokens,
        max_n=settings.max_n,
        tool_parser=tool_parser,
        reasoning_parser=reasoning_parser,
    )
    return ModelRegistry([model])


def special_token_texts(tokenizer: object) -> set[str]:
    """Every token a `skip_special_tokens` decode drops: the named special tokens and the added tokens marked
    special (Mistral's control tokens such as `[TOOL_CALLS]` are only the latter)."""
    texts = set(getattr(tokenizer, "all_special_tokens", ()) or ())
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    texts.update(str(token.content) for token in added.values() if getattr(token, "special", False))
    return texts


def resolve_parsers(settings: Settings, template_source: str) -> tuple[str | None, str | None]:
    """The tool-call and reasoning parser names: given, `none`, or `auto` (what the chat template implies)."""
    detected = detect_parsers(template_source)
    chosen = []
    for value, found, known, flag in (
        (settings.tool_call_parser, detected.tool, TOOL_PARSERS, "--tool-call-parser"),
        (settings.reasoning_parser, detected.reasoning, REASONING_PARSERS, "--reasoning-parser"),
    ):
        if value == "auto":
            chosen.append(found)
        elif value == "none":
            chosen.append(None)
        elif value in known:
            chosen.append(value)
        else:
            raise ConfigurationError(f"{flag} {value!r}: use one of {sorted(known)}, auto or none")
    return chosen[0], chosen[1]


def app_from_settings(settings: Settings) -> FastAPI:
    """The app for these settings."""
    configure_tracing(settings.otlp_endpoint)
    return create_app(build_registry(settings), settings)


def app_from_environment() -> FastAPI:
    """App factory for worker processes: settings from GATEWAY_* variables (set by the parent)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return app_from_settings(settings)
