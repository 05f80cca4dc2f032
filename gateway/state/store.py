"""The store: one small async interface over responses, conversations and background runs, on SQLite or PostgreSQL.

`open_store` picks the backend from the URL (none: a SQLite file under the state directory), migrates the schema
and returns a `Store`; its parts share one database. Nothing here runs per token: a response is written when it
ends, a background response's events in batches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gateway.errors import ConfigurationError
from gateway.state.conversations import ConversationStore
from gateway.state.database import Database, Sql, execute_one
from gateway.state.migrations import migrate
from gateway.state.records import Retention, StoreLimits
from gateway.state.responses import ResponseStore
from gateway.state.runs import BackgroundRuns
from gateway.state.usage import UsageTable

logger = logging.getLogger(__name__)

SQLITE_FILE = "store.sqlite3"
_PURGE_RESPONSES = Sql("DELETE FROM responses WHERE thread_id IN (SELECT id FROM threads WHERE expires_at < $1)")
_PURGE_THREADS = Sql("DELETE FROM threads WHERE expires_at < $1")
_PURGE_CONVERSATIONS = Sql("DELETE FROM conversations WHERE expires_at < $1")


def default_state_dir() -> Path:
    """`$XDG_STATE_HOME/trtllm-gateway`, else `~/.local/state/trtllm-gateway`."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "trtllm-gateway"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the store lives and what it keeps."""

    url: str | None = None  # postgresql://..., sqlite:///path; None: SQLite under state_dir
    state_dir: Path = field(default_factory=default_state_dir)
    limits: StoreLimits = field(default_factory=StoreLimits)
    retention: Retention = field(default_factory=Retention)
    max_connections: int = 8  # PostgreSQL pool size per process

    def target(self) -> tuple[str, str]:
        """(backend, where): ('sqlite', a file path or ':memory:') or ('postgresql', the URL)."""
        if self.url is None:
            return "sqlite", str(self.state_dir / SQLITE_FILE)
        scheme = urlsplit(self.url).scheme
        if scheme in ("postgresql", "postgres"):
            return "postgresql", self.url
        if scheme == "sqlite":
            path = self.url[len("sqlite://") :]
            if not path:
                raise ConfigurationError("--store-url sqlite:// needs a path: sqlite:///var/lib/gateway/store.db")
            return "sqlite", path
        raise ConfigurationError(
            f"--store-url: unknown scheme '{scheme}'; use postgresql://user:password@host:port/database or "
            "sqlite:///path/to/file"
        )


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class Store:
    """Responses, conversations, background runs and usage, on one database."""

    def __init__(self, database: Database, limits: StoreLimits, retention: Retention, where: str) -> None:
        self.database = database
        self.limits = limits
        self.retention = retention
        self.where = where
        self.responses = ResponseStore(database, limits)
        self.conversations = ConversationStore(database, limits)
        self.runs = BackgroundRuns(database, self.responses)
        self.usage = UsageTable(database)

    def response_expiry(self, now: float) -> float | None:
        """When a response stored (or renewed) now expires."""
        return None if self.retention.response_s is None else now + self.retention.response_s

    def conversation_expiry(self, now: float) -> float | None:
        """When a conversation changed now expires."""
        return None if self.retention.conversation_s is None else now + self.retention.conversation_s

    async def purge_expired(self, now: float) -> int:
        """Delete what outlived its retention (with its items and events); how many responses and
        conversations went."""
        responses = await execute_one(self.database, _PURGE_RESPONSES, now)
        await execute_one(self.database, _PURGE_THREADS, now)
        conversations = await execute_one(self.database, _PURGE_CONVERSATIONS, now)
        return responses + conversations

    async def close(self) -> None:
        """Close the database."""
        await self.database.close()


async def open_store(config: StoreConfig) -> Store:
    """Connect to the configured database and bring its schema up to date."""
    backend, where = config.target()
    database: Database
    try:
        if backend == "postgresql":
            from gateway.state.postgres import PostgresDatabase

            database = await PostgresDatabase.open(where, config.max_connections)
            where = redacted(where)
        else:
            from gateway.state.sqlite import SqliteDatabase

            database = await SqliteDatabase.open(where)
    except (OSError, ImportError) as exc:
        raise ConfigurationError(f"The store at {redacted(where)} cannot be opened: {exc}") from exc
    try:
        await migrate(database)
    except BaseException:
        await database.close()
        raise
    logger.info("store: %s (%s)", where, backend)
    return Store(database, config.limits, config.retention, where)


async def purge_periodically(store: Store, interval_s: float) -> None:
    """Purge expired things now and every `interval_s` (a task for the app's lifetime; failures are logged)."""
    while True:
        try:
            purged = await store.purge_expired(time.time())
            if purged:
                logger.info("store: purged %d expired responses and conversations", purged)
        except Exception:
            logger.exception("store: the retention purge failed; trying again in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
