"""Unit-test fixtures: the app over a FakeEngine, reached in-process through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app, guide_limits
from gateway.config import Settings
from gateway.devstack.dev_model import DEV_MODEL_NAME, ensure_dev_model
from gateway.openai.guide_checker import GuideChecker
from gateway.openai.served_model import ModelRegistry, ServedModel
from gateway.openai.tokens import ChatTemplate, TokenCounter, load_tokenizer
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


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http
