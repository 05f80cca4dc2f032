"""Usage accounting per tenant, key, model and UTC day: counted in this process, written to a ledger in batches.

A request adds to an in-memory row (no I/O); every `flush_s` the rows go to the ledger in one write, so the
ledger sees one write per interval, never one per request or token. The ledger is the gateway's store (SQLite, or
PostgreSQL shared by replicas; api/usage_ledger.py): every process adds its own counts to the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

from gateway.tenants.limits import DAY_S

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UsageKey:
    """What usage is counted by."""

    day: int  # Unix seconds at the start of the UTC day
    tenant: str
    key_id: str
    model: str


@dataclass(slots=True)
class UsageCounts:
    """Requests and tokens of one row."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: UsageCounts) -> None:
        """Add another row's counts to this one."""
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.cached_tokens += other.cached_tokens
        self.completion_tokens += other.completion_tokens


UsageRows = dict[UsageKey, UsageCounts]


class UsageLedger(Protocol):
    """Where usage rows are kept."""

    async def add(self, rows: UsageRows) -> None:
        """Add these counts to the rows kept (adding, never replacing: every process writes its own)."""
        ...

    async def read(self, start_day: int, end_day: int) -> list[tuple[UsageKey, UsageCounts]]:
        """The rows of the days from `start_day` up to, not including, `end_day` (Unix seconds)."""
        ...


def day_of(now: float) -> int:
    """The start of the UTC day of `now`."""
    return int(now // DAY_S) * DAY_S


class UsageRecorder:
    """Counts usage in memory and flushes it to the ledger every `flush_s`."""

    def __init__(self, ledger: UsageLedger, flush_s: float = 10.0) -> None:
        self.ledger = ledger
        self.flush_s = flush_s
        self._pending: UsageRows = {}
        self._flusher: asyncio.Task[None] | None = None

    def record(self, key: UsageKey, prompt: int, cached: int, completion: int) -> None:
        """One request's usage (in memory)."""
        counts = self._pending.get(key)
        if counts is None:
            counts = self._pending[key] = UsageCounts()
        counts.requests += 1
        counts.prompt_tokens += prompt
        counts.cached_tokens += cached
        counts.completion_tokens += completion

    async def flush(self) -> None:
        """Write what was counted since the last flush (kept for the next one if the ledger fails)."""
        rows, self._pending = self._pending, {}
        if not rows:
            return
        try:
            await self.ledger.add(rows)
        except Exception:
            logger.exception("usage ledger write failed; the counts are kept for the next flush")
            for key, counts in rows.items():
                self._pending.setdefault(key, UsageCounts()).add(counts)

    async def start(self) -> None:
        """Start flushing periodically."""
        self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def close(self) -> None:
        """Stop, and flush what is left."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            await self.flush()
