"""Processes that open one new SQLite store at the same moment (`--workers`, replicas starting together) all open it:
the one that SQLite answers "database is locked" while the file turns to WAL tries again."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.state import sqlite as sqlite_module
from gateway.state.database import Sql
from gateway.state.sqlite import SqliteDatabase

ROUNDS = 30
AT_ONCE = 8


async def test_many_connections_open_one_new_file_at_once(tmp_path: Path) -> None:
    for round_index in range(ROUNDS):
        path = str(tmp_path / f"store-{round_index}.sqlite3")
        databases = await asyncio.gather(*(SqliteDatabase.open(path) for _ in range(AT_ONCE)))
        try:
            async with databases[0].transaction() as connection:
                await connection.execute(Sql("CREATE TABLE t (x INTEGER)"))
            assert all(db.path == path for db in databases)
        finally:
            for database in databases:
                await database.close()


async def test_a_lock_that_outlasts_the_limit_fails_the_open_and_closes_its_connection(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT_MS", 100)  # how long the open tries again
    short_wait = ("PRAGMA busy_timeout=20", *sqlite_module.PRAGMAS[1:])  # how long each try waits
    monkeypatch.setattr(sqlite_module, "PRAGMAS", short_wait)
    holder = sqlite3.connect(tmp_path / "held.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # nobody else can read or switch the journal mode meanwhile
    closed = []
    real_connect = sqlite_module.aiosqlite.connect

    def connect(*args, **kwargs):
        connection = real_connect(*args, **kwargs)
        real_close = connection.close

        async def close() -> None:
            closed.append(True)
            await real_close()

        connection.close = close
        return connection

    monkeypatch.setattr(sqlite_module.aiosqlite, "connect", connect)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await SqliteDatabase.open(str(tmp_path / "held.sqlite3"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert closed == [True]
