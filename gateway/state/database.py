"""The little the store needs of a database, over SQLite (aiosqlite) and PostgreSQL (asyncpg) alike.

Every statement is written once, with PostgreSQL's numbered placeholders (`$1`, `$2`); SQLite reads the same
numbers as `?1`, `?2` (`Sql.sqlite`, translated once per statement). Values are `int`, `float`, `str`, `bytes` or
`None` in both directions (booleans are stored as 0/1 integers), so a row reads the same from either backend.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgresql"]
Value = int | float | str | bytes | None
Row = tuple[Any, ...]  # what a driver returns: the Value types, read by each query's own code

_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class Sql:
    """One statement, in PostgreSQL's placeholder style, with its SQLite spelling made once."""

    text: str
    sqlite: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sqlite", _PLACEHOLDER.sub(r"?\1", self.text))


class Connection(Protocol):
    """Statements inside one transaction."""

    async def execute(self, sql: Sql, *args: Value) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def execute_many(self, sql: Sql, rows: Sequence[Sequence[Value]]) -> None:
        """Run a statement once per row of arguments (one round trip)."""
        ...

    async def fetch(self, sql: Sql, *args: Value) -> list[Row]:
        """Every row of a query."""
        ...

    async def fetchrow(self, sql: Sql, *args: Value) -> Row | None:
        """The first row of a query, if any."""
        ...


class Database(Protocol):
    """A connection source: transactions, and the lock that serialises schema migrations across processes."""

    dialect: Dialect

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        ...

    def migration_lock(self) -> AbstractAsyncContextManager[Connection]:
        """A transaction that holds the database's migration lock (one process at a time, replicas included)."""
        ...

    async def close(self) -> None:
        """Close every connection."""
        ...


async def fetch_all(database: Database, sql: Sql, *args: Value) -> list[Row]:
    """Every row of one query, in a transaction of its own."""
    async with database.transaction() as connection:
        return await connection.fetch(sql, *args)


async def fetch_one(database: Database, sql: Sql, *args: Value) -> Row | None:
    """The first row of one query, in a transaction of its own."""
    async with database.transaction() as connection:
        return await connection.fetchrow(sql, *args)


async def execute_one(database: Database, sql: Sql, *args: Value) -> int:
    """One statement in a transaction of its own; the rows it changed."""
    async with database.transaction() as connection:
        return await connection.execute(sql, *args)
