"""Unit-test fixtures: the app over a FakeEngine, reached in-process through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.api.background import BackgroundRunner
from gateway.app import create_app, guide_limits
from gateway.config import Settings
from gateway.core.guide_checker import GuideChecker
from gateway.core.served_model import ModelRegistry, ServedModel
from gateway.core.tokens import ChatTemplate, TokenCounter, load_tokenizer
from gateway.devstack.dev_model import DEV_MODEL_NAME, ensure_dev_model
from gateway.state import Store, StoreConfig, open_store
from tests.unit.fake_engine import FakeEngine


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The dev model's tokenizer (built once into the cache)."""
    return load_tokenizer(ensure_dev_model())


@pytest.fixture
def fake_engine() -> FakeEngine:
    """A fresh scripted engine per test."""
    return FakeEngine()


@pytest.fixture
def settings() -> Settings:
    """Default settings; tests override fields before the `client` fixture builds the app."""
    return Settings()


@pytest.fixture
def app(fake_engine: FakeEngine, tokenizer: Any, settings: Settings) -> Iterator[FastAPI]:
    """The app over the fake engine, built with `settings` (its guide checker has the settings' limits)."""
    checker = GuideChecker(guide_limits(settings), settings.guide_check_workers)
    model = ServedModel(
        name=DEV_MODEL_NAME,
        engine=fake_engine,
        chat_template=ChatTemplate(tokenizer),
        counter=TokenCounter(tokenizer),
        default_max_tokens=16,
        max_tokens_limit=1000,
        max_prompt_tokens=settings.max_prompt_tokens,
        guide_checker=checker,
    )
    try:
        yield create_app(ModelRegistry([model]), settings)
    finally:
        checker.close()


@pytest.fixture(scope="session")
async def session_store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Store, BackgroundRunner]]:
    """One SQLite store (and background runner) for the session's apps: the lifespan that opens an app's own is
    not run in-process."""
    store = await open_store(StoreConfig(url=f"sqlite://{tmp_path_factory.mktemp('store') / 'store.sqlite3'}"))
    runner = BackgroundRunner(store, lease_s=10.0)
    runner.start()
    yield store, runner
    await runner.drain(5.0)
    await store.close()


@pytest.fixture
async def client(app: FastAPI, session_store: tuple[Store, BackgroundRunner]) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process (its store the session's)."""
    if app.state.store is None:
        app.state.store, app.state.background = session_store
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http
