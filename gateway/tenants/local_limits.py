"""The limits' counters in this process (no `--limits-url`): the same arithmetic as the Redis scripts, per process.

With several gateway processes (replicas or `--workers`) each one counts on its own, so a key gets its limits
once per process: the README says so, and `--limits-url redis://...` shares them.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from gateway.tenants.limits import WINDOW_S, Refusal, Reservation, Verdict, Window

CONCURRENCY_RETRY_S = 1.0


@dataclass
class _KeyCounters:
    """One key's counters."""

    requests: deque[float] = field(default_factory=deque)  # admission times, oldest first
    tokens: OrderedDict[str, tuple[float, int]] = field(default_factory=OrderedDict)  # id -> (admitted, tokens)
    token_total: int = 0
    running: set[str] = field(default_factory=set)
    budgets: dict[str, int] = field(default_factory=dict)  # "d20260814" / "m202608" -> tokens charged

    def prune(self, now: float, day: str, month: str) -> None:
        """Forget what left the window, and budgets of past periods."""
        since = now - WINDOW_S
        while self.requests and self.requests[0] <= since:
            self.requests.popleft()
        while self.tokens:
            oldest_id, (admitted, tokens) = next(iter(self.tokens.items()))
            if admitted > since:
                break
            del self.tokens[oldest_id]
            self.token_total -= tokens
        for period in [p for p in self.budgets if p not in (day, month)]:
            del self.budgets[period]

    def requests_window(self, limit: int, now: float) -> Window:
        reset = self.requests[0] + WINDOW_S - now if self.requests else 0.0
        return Window(limit, max(limit - len(self.requests), 0), reset)

    def tokens_window(self, limit: int, now: float) -> Window:
        reset = next(iter(self.tokens.values()))[0] + WINDOW_S - now if self.tokens else 0.0
        return Window(limit, max(limit - self.token_total, 0), reset)

    def tokens_free_in(self, needed: int, limit: int, now: float) -> float:
        """Seconds until enough reservations leave the window for `needed` more tokens."""
        excess = self.token_total + needed - limit
        for admitted, tokens in self.tokens.values():
            excess -= tokens
            if excess <= 0:
                return admitted + WINDOW_S - now
        return WINDOW_S


class LocalLimits:
    """A LimitsBackend in this process's memory."""

    def __init__(self) -> None:
        self._keys: dict[str, _KeyCounters] = {}

    async def start(self) -> None:
        """Nothing runs in the background."""

    async def close(self) -> None:
        """Nothing to release."""

    async def admit(self, reservation: Reservation, now: float) -> Verdict:
        """Check and charge every limit at once (atomic: nothing awaits in between)."""
        return self.admit_now(reservation, now)

    def admit_now(self, reservation: Reservation, now: float) -> Verdict:
        """`admit`, synchronously."""
        limits, periods = reservation.limits, reservation.periods
        counters = self._keys.setdefault(reservation.key_id, _KeyCounters())
        day, month = "d" + periods.day, "m" + periods.month
        counters.prune(now, day, month)
        rpm, tpm, tokens = limits.requests_per_minute, limits.tokens_per_minute, reservation.tokens
        refusal, retry = self._refusal(counters, reservation, now)
        if refusal is None:
            if rpm is not None:
                counters.requests.append(now)
            if tpm is not None:
                counters.tokens[reservation.id] = (now, tokens)
                counters.token_total += tokens
            if limits.concurrent_requests is not None:
                counters.running.add(reservation.id)
            for period, budget in ((day, limits.tokens_per_day), (month, limits.tokens_per_month)):
                if budget is not None:
                    counters.budgets[period] = counters.budgets.get(period, 0) + tokens
        return Verdict(
            reservation=reservation if refusal is None else None,
            refusal=refusal,
            requests=counters.requests_window(rpm, now) if rpm is not None else None,
            tokens=counters.tokens_window(tpm, now) if tpm is not None else None,
            retry_after_s=retry,
        )

    @staticmethod
    def _refusal(counters: _KeyCounters, reservation: Reservation, now: float) -> tuple[Refusal | None, float | None]:
        limits, periods, tokens = reservation.limits, reservation.periods, reservation.tokens
        if limits.concurrent_requests is not None and len(counters.running) >= limits.concurrent_requests:
            return Refusal.CONCURRENCY, CONCURRENCY_RETRY_S
        rpm = limits.requests_per_minute
        if rpm is not None and len(counters.requests) >= rpm:
            return Refusal.REQUESTS, counters.requests[0] + WINDOW_S - now
        tpm = limits.tokens_per_minute
        if tpm is not None and tokens > tpm:
            return Refusal.TOO_LARGE, None
        if tpm is not None and counters.token_total + tokens > tpm:
            return Refusal.TOKENS, counters.tokens_free_in(tokens, tpm, now)
        day, month = counters.budgets.get("d" + periods.day, 0), counters.budgets.get("m" + periods.month, 0)
        if limits.tokens_per_day is not None and day + tokens > limits.tokens_per_day:
            return Refusal.DAY, periods.day_ends - now
        if limits.tokens_per_month is not None and month + tokens > limits.tokens_per_month:
            return Refusal.MONTH, periods.month_ends - now
        return None, None

    async def settle(self, reservation: Reservation, spent: int) -> None:
        """Release the lease; the entry and the budgets get what was really used instead of the reservation."""
        self.settle_now(reservation, spent)

    def settle_now(self, reservation: Reservation, spent: int) -> None:
        """`settle`, synchronously."""
        counters = self._keys.get(reservation.key_id)
        if counters is None:
            return
        counters.running.discard(reservation.id)
        correction = spent - reservation.tokens
        entry = counters.tokens.get(reservation.id)
        if entry is not None:  # still in the window
            counters.tokens[reservation.id] = (entry[0], spent)
            counters.token_total += correction
        limits, periods = reservation.limits, reservation.periods
        for period, charged in (
            ("d" + periods.day, limits.tokens_per_day),
            ("m" + periods.month, limits.tokens_per_month),
        ):
            if charged is not None and period in counters.budgets:
                counters.budgets[period] += correction
