"""The store under test, on each backend: a SQLite file, and a real PostgreSQL server (one per session, a fresh
database per test)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from gateway.state import Retention, Store, StoreConfig, StoreLimits, open_store
from tests.postgres_server import available, postgres_server

BACKENDS = ["sqlite", "postgresql"]
_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The session's PostgreSQL server."""
    if not available():
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    with postgres_server() as url:
        yield url


async def fresh_database(server_url: str) -> str:
    """A new empty database on the server; its URL."""
    name = f"test_{next(_numbers)}"
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'store.sqlite3'}"
    return await fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def limits() -> StoreLimits:
    """Small limits, so that the tests reach them."""
    return StoreLimits(
        max_response_bytes=4096, max_conversation_items=5, max_conversation_bytes=2048, max_history_bytes=8192
    )


@pytest.fixture
async def store(store_url: str, limits: StoreLimits) -> AsyncIterator[Store]:
    """An opened (migrated) store."""
    opened = await open_store(StoreConfig(url=store_url, limits=limits, retention=Retention(100.0, 200.0)))
    try:
        yield opened
    finally:
        await opened.close()
