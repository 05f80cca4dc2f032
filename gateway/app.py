"""The FastAPI application: routers, error handlers, and the engine's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import __version__
from gateway.api import chat, completions, health, metrics, models
from gateway.api.errors import install_error_handlers
from gateway.api.middleware import RequestTelemetryMiddleware
from gateway.config import Settings
from gateway.engine.triton import TritonEngine, TritonEngineConfig
from gateway.errors import ConfigurationError
from gateway.openai.served_model import ModelRegistry, ServedModel
from gateway.openai.tokens import ChatTemplate, TokenCounter, load_tokenizer
from gateway.telemetry import GatewayMetrics, configure_logging
from gateway.telemetry.tracing import configure_tracing


def create_app(registry: ModelRegistry) -> FastAPI:
    """An app serving the models of `registry`; their engines start and stop with the app."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for model in registry.all():
            await model.engine.start()
        try:
            yield
        finally:
            for model in registry.all():
                await model.engine.close()

    app = FastAPI(title="trtllm-gateway", version=__version__, lifespan=lifespan)
    app.state.registry = registry
    app.state.metrics = GatewayMetrics()
    install_error_handlers(app)
    for router in (chat.router, completions.router, models.router, health.router, metrics.router):
        app.include_router(router)
    app.add_middleware(RequestTelemetryMiddleware, metrics=app.state.metrics)
    return app


def build_registry(settings: Settings) -> ModelRegistry:
    """The served model described by the settings, with a Triton engine behind it."""
    if settings.tokenizer is None:
        raise ConfigurationError(
            "--tokenizer (GATEWAY_TOKENIZER) is required: the model's Hugging Face tokenizer folder"
        )
    tokenizer = load_tokenizer(settings.tokenizer)
    engine_config = TritonEngineConfig(
        url=settings.triton_url, model=settings.triton_model, engine_model=settings.triton_engine_model
    )
    engine = TritonEngine(engine_config, tokenizer)
    model = ServedModel(
        name=settings.model_name(),
        engine=engine,
        chat_template=ChatTemplate(tokenizer, settings.chat_template),
        counter=TokenCounter(tokenizer),
        default_max_tokens=settings.default_max_tokens,
        max_tokens_limit=settings.max_tokens_limit,
    )
    return ModelRegistry([model])


def app_from_settings(settings: Settings) -> FastAPI:
    """The app for these settings."""
    configure_tracing(settings.otlp_endpoint)
    return create_app(build_registry(settings))


def app_from_environment() -> FastAPI:
    """App factory for worker processes: settings from GATEWAY_* variables (set by the parent)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return app_from_settings(settings)
