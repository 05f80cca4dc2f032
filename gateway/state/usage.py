"""Usage per UTC day, tenant, key and model: rows that every process adds its counts to, one statement per flush.

Each process (every replica on PostgreSQL, every worker on one SQLite file) counts in memory and adds its batch
here; an upsert adds to the row instead of replacing it, so concurrent writers never lose each other's counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.state.database import Database, Sql, fetch_all

_ADD = Sql(
    """INSERT INTO tenant_usage
        (day, tenant, key_id, model, requests, prompt_tokens, cached_tokens, completion_tokens)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (day, tenant, key_id, model) DO UPDATE SET
        requests = tenant_usage.requests + excluded.requests,
        prompt_tokens = tenant_usage.prompt_tokens + excluded.prompt_tokens,
        cached_tokens = tenant_usage.cached_tokens + excluded.cached_tokens,
        completion_tokens = tenant_usage.completion_tokens + excluded.completion_tokens"""
)
_READ = Sql(
    """SELECT day, tenant, key_id, model, requests, prompt_tokens, cached_tokens, completion_tokens
    FROM tenant_usage WHERE day >= $1 AND day < $2"""
)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One day's requests and tokens of a tenant's key on a model."""

    day: int  # Unix seconds at the start of the UTC day
    tenant: str
    key_id: str
    model: str
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int


class UsageTable:
    """The usage rows of the store."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def add(self, records: Sequence[UsageRecord]) -> None:
        """Add these counts to their rows (created when missing), in one transaction."""
        rows = [
            (r.day, r.tenant, r.key_id, r.model, r.requests, r.prompt_tokens, r.cached_tokens, r.completion_tokens)
            for r in records
        ]
        async with self._database.transaction() as connection:
            await connection.execute_many(_ADD, rows)

    async def read(self, start_day: int, end_day: int) -> list[UsageRecord]:
        """The rows of the days from `start_day` up to, not including, `end_day`."""
        rows = await fetch_all(self._database, _READ, start_day, end_day)
        return [
            UsageRecord(
                int(day), str(tenant), str(key_id), str(model), int(requests), int(prompt), int(cached), int(completion)
            )
            for day, tenant, key_id, model, requests, prompt, cached, completion in rows
        ]
