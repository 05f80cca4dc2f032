"""A key's limits, and what every limits backend (in-process or Redis) answers for one admission.

The arithmetic, the same in both backends:
- requests per minute: a sliding log; a request counts for the 60 s after its admission;
- tokens per minute: a sliding log of reservations; a request reserves its prompt tokens plus every choice's
  `max_tokens` at admission, and when it ends its entry becomes what it really used (the rest is returned);
- token budgets per UTC day and per UTC month: counters charged with the reservation, corrected at the end;
- concurrent requests: leases held while the request runs (in Redis they expire unless renewed, so a replica
  that dies cannot hold its slots forever).
A request is admitted only if every limit has room for it, in one atomic step, so concurrent bursts cannot
overshoot: what is admitted in a window never reserves more than the limit, and what is used is at most what
was reserved (the engine cannot generate more than `max_tokens`), except by the difference between the
engine's prompt count and the gateway's (the same tokenizer: none).
"""

from __future__ import annotations

import calendar
import enum
import functools
import time
from dataclasses import dataclass
from typing import Protocol

WINDOW_S = 60.0
LEASE_S = 60.0  # a concurrency lease in Redis; renewed every third of it while the request runs
DAY_S = 86400


@dataclass(frozen=True, slots=True)
class Limits:
    """A key's limits; None: no limit."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None

    @property
    def counts_tokens(self) -> bool:
        """Whether an admission needs the request's token count."""
        return any(v is not None for v in (self.tokens_per_minute, self.tokens_per_day, self.tokens_per_month))

    @property
    def unlimited(self) -> bool:
        """Whether nothing is limited (no backend call at all)."""
        return not self.counts_tokens and self.requests_per_minute is None and self.concurrent_requests is None


class Refusal(enum.Enum):
    """Which limit refused a request."""

    CONCURRENCY = "concurrent_requests"
    REQUESTS = "requests_per_minute"
    TOKENS = "tokens_per_minute"
    TOO_LARGE = "request_too_large"  # the request alone reserves more than the tokens-per-minute limit
    DAY = "tokens_per_day"
    MONTH = "tokens_per_month"
    UNAVAILABLE = "limits_unavailable"  # the shared backend is unreachable and the policy is closed


@dataclass(frozen=True, slots=True)
class Window:
    """A per-minute limit as the rate-limit headers show it."""

    limit: int
    remaining: int
    reset_s: float  # until the oldest counted request leaves the window (when `remaining` next rises)


@dataclass(frozen=True, slots=True)
class Periods:
    """The UTC day and month an admission is charged to, and when they end."""

    day: str
    month: str
    day_ends: float
    month_ends: float

    @staticmethod
    def at(now: float) -> Periods:
        """The periods that contain `now` (Unix seconds)."""
        return _periods_of_day(int(now // DAY_S))


@functools.lru_cache(maxsize=4)
def _periods_of_day(day: int) -> Periods:
    start = day * DAY_S
    year, month, date = time.gmtime(start)[:3]
    next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
    month_ends = calendar.timegm((next_year, next_month, 1, 0, 0, 0, 0, 0, 0))
    return Periods(f"{year:04d}{month:02d}{date:02d}", f"{year:04d}{month:02d}", start + DAY_S, month_ends)


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one admitted request holds until it ends (what its settlement corrects)."""

    id: str
    key_id: str
    tokens: int
    limits: Limits  # the limits it was admitted under: which counters it charged
    periods: Periods


@dataclass(frozen=True, slots=True)
class Verdict:
    """One admission's answer: a reservation, or the refusal; the windows for the headers either way."""

    reservation: Reservation | None = None  # None when refused, or admitted unchecked
    refusal: Refusal | None = None
    requests: Window | None = None
    tokens: Window | None = None
    retry_after_s: float | None = None
    unchecked: bool = False  # the backend was unreachable and the policy is open: admitted without a check

    @property
    def admitted(self) -> bool:
        """Whether the request may run."""
        return self.refusal is None


class LimitsBackend(Protocol):
    """Where the counters live: this process, or a Redis every replica shares."""

    async def admit(self, reservation: Reservation, now: float) -> Verdict:
        """Check every limit of `reservation.limits` and, if all have room, charge them (one atomic step)."""
        ...

    async def settle(self, reservation: Reservation, spent: int) -> None:
        """The request ended having used `spent` tokens: correct its charges and release its lease."""
        ...

    async def start(self) -> None:
        """Start background work (lease renewal)."""
        ...

    async def close(self) -> None:
        """Stop background work and release connections."""
        ...
