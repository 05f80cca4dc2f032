"""The replicas' backend: PostgreSQL through an asyncpg connection pool.

asyncpg speaks PostgreSQL's binary protocol and prepares each statement once per connection (its statement
cache), so a stored response costs the server round trips and nothing more. Migrations hold a transaction-scoped
advisory lock, so replicas that start at the same moment apply them one after the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from gateway.state.database import Connection, Dialect, Row, Sql, Value

MIGRATION_LOCK_KEY = 0x7472746C6C6D  # "trtllm": any constant shared by every replica


class _PostgresConnection:
    """One pooled connection, inside one transaction."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def execute(self, sql: Sql, *args: Value) -> int:
        status: str = await self._connection.execute(sql.text, *args)
        tail = status.rsplit(" ", 1)[-1]  # "UPDATE 3", "INSERT 0 1", "DELETE 0"
        return int(tail) if tail.isdigit() else 0

    async def execute_many(self, sql: Sql, rows: Sequence[Sequence[Value]]) -> None:
        await self._connection.executemany(sql.text, rows)

    async def fetch(self, sql: Sql, *args: Value) -> list[Row]:
        return [tuple(record) for record in await self._connection.fetch(sql.text, *args)]

    async def fetchrow(self, sql: Sql, *args: Value) -> Row | None:
        record = await self._connection.fetchrow(sql.text, *args)
        return tuple(record) if record is not None else None


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database."""

    dialect: Dialect = "postgresql"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, max_connections: int = 8) -> PostgresDatabase:
        """Connect to `url` (postgresql://user:password@host:port/database)."""
        pool = await asyncpg.create_pool(url, min_size=1, max_size=max_connections)
        return cls(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection in a transaction (READ COMMITTED, the server's default)."""
        async with self._pool.acquire() as connection, connection.transaction():
            yield _PostgresConnection(connection)

    @asynccontextmanager
    async def migration_lock(self) -> AsyncIterator[Connection]:
        """A transaction holding the migration advisory lock (released when it ends)."""
        async with self.transaction() as connection:
            await connection.execute(Sql("SELECT pg_advisory_xact_lock($1)"), MIGRATION_LOCK_KEY)
            yield connection

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()
