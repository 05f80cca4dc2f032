"""A transaction cancelled at any await leaves the shared SQLite connection ready for the next one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.state.database import Sql
from gateway.state.sqlite import SqliteDatabase

CREATE = Sql("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
INSERT = Sql("INSERT INTO t (v) VALUES ($1)")
COUNT = Sql("SELECT count(*) FROM t")


@pytest.mark.parametrize("yields_before_cancel", range(6))
async def test_a_cancelled_transaction_never_leaves_one_open(tmp_path: Path, yields_before_cancel: int) -> None:
    database = await SqliteDatabase.open(str(tmp_path / "store.db"))
    try:
        async with database.transaction() as connection:
            await connection.execute(CREATE)

        async def write() -> None:
            async with database.transaction() as connection:
                await connection.execute(INSERT, 1)

        task = asyncio.create_task(write())
        for _ in range(yields_before_cancel):  # cancelled while BEGIN, the INSERT or COMMIT runs on the thread
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        async with database.transaction() as connection:  # raised "cannot start a transaction within a transaction"
            await connection.execute(INSERT, 2)
            rows = await connection.fetch(COUNT)
        assert rows[0][0] in (1, 2)
    finally:
        await database.close()
