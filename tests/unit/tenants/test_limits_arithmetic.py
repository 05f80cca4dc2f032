"""The limits' arithmetic (tenants/limits.py, local_limits.py): sliding windows, reservations returned when a
request ends, budgets per UTC day and month, concurrency, and the overshoot bound under any interleaving."""

from __future__ import annotations

import calendar
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api.rate_limits import duration_text, rate_limit_headers
from gateway.tenants.limits import WINDOW_S, Limits, Periods, Refusal, Reservation
from gateway.tenants.local_limits import LocalLimits

T0 = calendar.timegm((2026, 8, 14, 12, 0, 0, 0, 0, 0))


def ask(limits: Limits, tokens: int = 0, now: float = T0, key: str = "k") -> Reservation:
    return Reservation(uuid.uuid4().hex, key, tokens, limits, Periods.at(now))


def test_requests_per_minute_is_a_sliding_window() -> None:
    backend = LocalLimits()
    limits = Limits(requests_per_minute=3)
    for i in range(3):
        verdict = backend.admit_now(ask(limits, now=T0 + i), T0 + i)
        assert verdict.admitted and verdict.requests is not None
        assert verdict.requests.remaining == 2 - i
    refused = backend.admit_now(ask(limits, now=T0 + 10), T0 + 10)
    assert refused.refusal is Refusal.REQUESTS
    assert refused.retry_after_s == pytest.approx(WINDOW_S - 10)  # the first admission leaves at T0 + 60
    assert refused.requests is not None and refused.requests.remaining == 0
    assert backend.admit_now(ask(limits, now=T0 + 59.9), T0 + 59.9).refusal is Refusal.REQUESTS
    assert backend.admit_now(ask(limits, now=T0 + 60), T0 + 60).admitted  # one left the window
    assert backend.admit_now(ask(limits, now=T0 + 60.5), T0 + 60.5).refusal is Refusal.REQUESTS


def test_a_burst_gets_exactly_the_limit() -> None:
    backend = LocalLimits()
    limits = Limits(requests_per_minute=60)
    outcomes = [backend.admit_now(ask(limits, now=T0 + i * 0.01), T0 + i * 0.01).admitted for i in range(200)]
    assert outcomes.count(True) == 60 and outcomes[:60] == [True] * 60


def test_tokens_are_reserved_then_the_unused_part_returned() -> None:
    backend = LocalLimits()
    limits = Limits(tokens_per_minute=1000)
    first = backend.admit_now(ask(limits, 600), T0)
    assert first.tokens is not None and first.tokens.remaining == 400
    refused = backend.admit_now(ask(limits, 500, T0 + 1), T0 + 1)
    assert refused.refusal is Refusal.TOKENS
    assert refused.retry_after_s == pytest.approx(WINDOW_S - 1)
    assert first.reservation is not None
    backend.settle_now(first.reservation, 120)  # it used 120 of its 600
    second = backend.admit_now(ask(limits, 500, T0 + 2), T0 + 2)
    assert second.admitted and second.tokens is not None and second.tokens.remaining == 1000 - 120 - 500


def test_a_request_larger_than_the_limit_is_refused_for_good() -> None:
    backend = LocalLimits()
    verdict = backend.admit_now(ask(Limits(tokens_per_minute=100), 101), T0)
    assert verdict.refusal is Refusal.TOO_LARGE and verdict.retry_after_s is None


def test_retry_after_waits_for_enough_tokens_to_leave() -> None:
    backend = LocalLimits()
    limits = Limits(tokens_per_minute=1000)
    for offset, tokens in ((0, 300), (10, 300), (20, 300)):
        assert backend.admit_now(ask(limits, tokens, T0 + offset), T0 + offset).admitted
    refused = backend.admit_now(ask(limits, 650, T0 + 30), T0 + 30)
    # 900 counted: 550 must leave, so the first two (at T0 and T0 + 10) must: the second leaves at T0 + 70.
    assert refused.refusal is Refusal.TOKENS and refused.retry_after_s == pytest.approx(40)


def test_a_settlement_after_the_window_changes_nothing_counted() -> None:
    backend = LocalLimits()
    limits = Limits(tokens_per_minute=1000)
    long_one = backend.admit_now(ask(limits, 900), T0).reservation
    assert long_one is not None
    assert backend.admit_now(ask(limits, 900, T0 + 61), T0 + 61).admitted  # the first left the window
    backend.settle_now(long_one, 10)  # a stream that ran past its minute: its entry is gone already
    assert backend.admit_now(ask(limits, 200, T0 + 62), T0 + 62).refusal is Refusal.TOKENS


def test_budgets_per_day_and_month_are_charged_then_corrected() -> None:
    backend = LocalLimits()
    limits = Limits(tokens_per_day=1000, tokens_per_month=1500)
    first = backend.admit_now(ask(limits, 800), T0)
    assert first.admitted and first.reservation is not None
    refused = backend.admit_now(ask(limits, 300, T0 + 1), T0 + 1)
    assert refused.refusal is Refusal.DAY
    assert refused.retry_after_s == pytest.approx(12 * 3600 - 1)  # until midnight UTC
    backend.settle_now(first.reservation, 500)
    assert backend.admit_now(ask(limits, 300, T0 + 2), T0 + 2).admitted  # 800 of the day's 1000
    tomorrow = T0 + 86400  # a new day; the month has 800
    assert backend.admit_now(ask(limits, 800, tomorrow), tomorrow).refusal is Refusal.MONTH
    assert backend.admit_now(ask(limits, 700, tomorrow), tomorrow).admitted  # exactly the month's 1500
    assert backend.admit_now(ask(limits, 1, tomorrow), tomorrow).refusal is Refusal.MONTH
    september = T0 + 31 * 86400
    assert backend.admit_now(ask(limits, 700, september), september).admitted


def test_concurrency_is_held_until_the_request_ends() -> None:
    backend = LocalLimits()
    limits = Limits(concurrent_requests=2)
    held = [backend.admit_now(ask(limits), T0).reservation for _ in range(2)]
    refused = backend.admit_now(ask(limits), T0)
    assert refused.refusal is Refusal.CONCURRENCY and refused.retry_after_s == 1.0
    assert held[0] is not None
    backend.settle_now(held[0], 0)
    assert backend.admit_now(ask(limits), T0).admitted


def test_keys_are_counted_apart() -> None:
    backend = LocalLimits()
    limits = Limits(requests_per_minute=1)
    assert backend.admit_now(ask(limits, key="a"), T0).admitted
    assert backend.admit_now(ask(limits, key="b"), T0).admitted
    assert not backend.admit_now(ask(limits, key="a"), T0).admitted


def test_periods_end_at_utc_midnight_and_month_start() -> None:
    december = calendar.timegm((2026, 12, 31, 23, 59, 59, 0, 0, 0))
    periods = Periods.at(december)
    assert (periods.day, periods.month) == ("20261231", "202612")
    assert periods.day_ends == periods.month_ends == calendar.timegm((2027, 1, 1, 0, 0, 0, 0, 0, 0))


def test_headers_show_the_windows_as_openai_does() -> None:
    backend = LocalLimits()
    limits = Limits(requests_per_minute=10, tokens_per_minute=1000)
    backend.admit_now(ask(limits, 100), T0)
    headers = rate_limit_headers(backend.admit_now(ask(limits, 50, T0 + 15), T0 + 15))
    assert headers == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "8",
        "x-ratelimit-reset-requests": "45s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "850",
        "x-ratelimit-reset-tokens": "45s",
    }
    assert [duration_text(s) for s in (0.25, 1.5, 59.9, 60, 361, 3725)] == ["250ms", "1.5s", "59.9s", "1m0s", "6m1s",
                                                                           "1h2m5s"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 5), st.integers(1, 400), st.floats(0, 1), st.booleans()), min_size=1, max_size=120)
)
def test_no_interleaving_overshoots_the_limit(steps: list[tuple[float, int, float, bool]]) -> None:
    """Whatever arrives and however much of its reservation each request uses (never more: the engine stops at
    max_tokens), the tokens counted for any minute never exceed the limit, and a budget is never overspent."""
    backend = LocalLimits()
    limits = Limits(tokens_per_minute=1000, tokens_per_day=3000)
    now = T0
    running: list[tuple[Reservation, int]] = []
    reservation_times: dict[str, float] = {}
    admitted: list[tuple[float, int]] = []  # (admission time, tokens finally charged)
    for gap, tokens, used_share, settle_first in steps:
        now += gap
        if settle_first and running:
            reservation, spent = running.pop(0)
            backend.settle_now(reservation, spent)
            admitted.append((reservation_times[reservation.id], spent))
        reservation = ask(limits, tokens, now)
        verdict = backend.admit_now(reservation, now)
        if verdict.admitted:
            reservation_times[reservation.id] = now
            running.append((reservation, int(tokens * used_share)))
        in_window = sum(r.tokens for r, _ in running if reservation_times[r.id] > now - WINDOW_S)
        in_window += sum(spent for at, spent in admitted if at > now - WINDOW_S)
        assert in_window <= 1000
    assert sum(s for _, s in admitted) + sum(r.tokens for r, _ in running) <= 3000
