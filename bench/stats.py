"""Latency histograms that merge across load-generator processes, and percentiles."""

from __future__ import annotations

import math
from collections.abc import Iterable

# Log-spaced buckets: 1 % wide, from 1 µs up; bucket i holds values in [base^i, base^(i+1)) µs.
_LOG_BASE = math.log(1.01)


class LogHistogram:
    """Counts of positive durations in 1 %-wide buckets (sparse), mergeable by addition."""

    __slots__ = ("counts", "total")

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: dict[int, int] = counts or {}
        self.total = sum(self.counts.values())

    def add(self, seconds: float) -> None:
        """Record one duration in seconds."""
        micros = seconds * 1e6
        index = int(math.log(micros) / _LOG_BASE) if micros > 1.0 else 0
        self.counts[index] = self.counts.get(index, 0) + 1
        self.total += 1

    def merge(self, other: LogHistogram) -> None:
        """Add another histogram's counts to this one."""
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count
        self.total += other.total

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100) in milliseconds, at the bucket's geometric middle; None when empty."""
        if not self.total:
            return None
        rank = max(1, math.ceil(self.total * q / 100.0))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return math.exp((index + 0.5) * _LOG_BASE) / 1000.0
        return None

    def to_json(self) -> dict[str, int]:
        """JSON-able form (keys as strings)."""
        return {str(k): v for k, v in self.counts.items()}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> LogHistogram:
        """Inverse of to_json."""
        return cls({int(k): int(v) for k, v in data.items()})


def percentile(values: Iterable[float], q: float) -> float | None:
    """Exact q-th percentile (nearest rank) of a list of values; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(len(ordered) * q / 100.0))
    return ordered[rank - 1]


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, None when either is missing or the reference is zero."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference
