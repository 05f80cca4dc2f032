"""The embedded backend: one SQLite file in WAL mode, reached through aiosqlite (sqlite3 on a thread of its own).

WAL with `synchronous=NORMAL`: a committed transaction survives the process being killed (kill -9) because it is
in the WAL file the moment COMMIT returns; only a power loss can take the last ones back. Several processes (the
gateway's `--workers`) may share one file: writers wait for each other up to `busy_timeout`. Inside a process the
one connection is shared, so transactions take turns (an asyncio lock), each `BEGIN IMMEDIATE` so that a reader
never has to upgrade its lock halfway (which SQLite answers with SQLITE_BUSY at once, whatever the timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from gateway.state.database import Connection, Dialect, Row, Sql, Value

BUSY_TIMEOUT_MS = 10_000
PRAGMAS = (
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)
# Two connections that switch a new file to WAL at once can deadlock on its lock; SQLite then answers one of them
# "database is locked" at once, without waiting for busy_timeout. That one tries again, for as long as a writer
# would wait.
PRAGMA_RETRY_S = 0.02


class _SqliteConnection:
    """The shared connection, inside one transaction."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def execute(self, sql: Sql, *args: Value) -> int:
        cursor = await self._connection.execute(sql.sqlite, args)
        return cursor.rowcount

    async def execute_many(self, sql: Sql, rows: Sequence[Sequence[Value]]) -> None:
        await self._connection.executemany(sql.sqlite, rows)

    async def fetch(self, sql: Sql, *args: Value) -> list[Row]:
        return [tuple(row) for row in await self._connection.execute_fetchall(sql.sqlite, args)]

    async def fetchrow(self, sql: Sql, *args: Value) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None


class SqliteDatabase:
    """One SQLite file (created with its folder when missing)."""

    dialect: Dialect = "sqlite"

    def __init__(self, connection: aiosqlite.Connection, path: str) -> None:
        self._connection = connection
        self._turn = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: str) -> SqliteDatabase:
        """Open (or create) the database file at `path` (`:memory:` for a private in-memory one)."""
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None)  # transactions are ours: BEGIN IMMEDIATE
        try:
            for pragma in PRAGMAS:
                await _execute_while_locked(connection, pragma, BUSY_TIMEOUT_MS / 1000)
        except BaseException:
            await asyncio.shield(connection.close())  # its thread would keep the process alive
            raise
        return cls(connection, path)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT`, or `ROLLBACK` when anything raises (cancellation included)."""
        async with self._turn:
            try:
                await self._connection.execute("BEGIN IMMEDIATE")
                yield _SqliteConnection(self._connection)
                await self._connection.execute("COMMIT")
            except BaseException:
                await asyncio.shield(self._end_interrupted())
                raise

    async def _end_interrupted(self) -> None:
        """Roll back what a raise or a cancel interrupted. A cancelled await does not stop the statement on the
        connection's thread (a BEGIN or COMMIT still runs, before this), so the transaction may be open, committed
        or never begun: the ROLLBACK of the last two is refused, and that refusal is expected."""
        with contextlib.suppress(sqlite3.OperationalError):  # no transaction is active
            await self._connection.execute("ROLLBACK")

    @asynccontextmanager
    async def migration_lock(self) -> AsyncIterator[Connection]:
        """A write transaction: `BEGIN IMMEDIATE` already excludes every other writer, other processes too."""
        async with self.transaction() as connection:
            yield connection

    async def close(self) -> None:
        """Close the connection (and its thread)."""
        await self._connection.close()


async def _execute_while_locked(connection: aiosqlite.Connection, sql: str, limit_s: float) -> None:
    """Execute `sql`, again while SQLite answers "database is locked", for up to `limit_s`."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        try:
            await connection.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or asyncio.get_running_loop().time() >= deadline:
                raise
        await asyncio.sleep(PRAGMA_RETRY_S)
