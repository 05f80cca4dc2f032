"""Per-request timing and what falls into the measurement window: tokens, TTFT, inter-token gaps, errors."""

from __future__ import annotations

import math
from typing import Any

from bench.stats import LogHistogram

MAX_ERROR_SAMPLES = 5


class WindowStats:
    """Everything one load-generator process measured inside [start, end) (monotonic seconds)."""

    def __init__(self, start: float, end: float, trust_usage: bool) -> None:
        self.start = start
        self.end = end
        self.trust_usage = trust_usage
        self.tokens = 0.0
        self.ttft: list[float] = []
        self.latency: list[float] = []
        self.itl = LogHistogram()
        self.started = 0
        self.completed = 0
        self.completed_in_window = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.untrusted_texts: list[str] = []  # non-streamed texts whose tokens must be counted locally
        self.open = 0
        self.max_open = 0
        self.in_flight = 0
        self.max_in_flight = 0
        # Tokens per chunk of the completed streams whose usage is trusted: applied to unfinished streams.
        self.usage_tokens_seen = 0
        self.usage_chunks_seen = 0

    def tokens_per_chunk(self) -> float:
        """Average tokens per streamed chunk so far (1.0 before any trusted usage)."""
        return self.usage_tokens_seen / self.usage_chunks_seen if self.usage_chunks_seen else 1.0

    def inside(self, now: float) -> bool:
        """Whether a time falls in the window."""
        return self.start <= now < self.end

    def error(self, message: str, now: float) -> None:
        """Count a failed request (every error counts, in the window or not)."""
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(message[:300])

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (histograms sparse)."""
        return {
            "tokens": self.tokens,
            "ttft": self.ttft,
            "latency": self.latency,
            "itl": self.itl.to_json(),
            "started": self.started,
            "completed": self.completed,
            "completed_in_window": self.completed_in_window,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "max_open": self.max_open,
            "max_in_flight": self.max_in_flight,
        }


class RequestClock:
    """Timing of one request: content arrivals feed the window as they happen."""

    __slots__ = ("chunks", "chunks_in_window", "done", "first", "last", "opened", "stats", "t0", "usage_tokens")

    def __init__(self, stats: WindowStats, t0: float) -> None:
        self.stats = stats
        self.t0 = t0
        self.first: float | None = None
        self.last = t0
        self.chunks = 0
        self.chunks_in_window = 0
        self.usage_tokens = 0
        self.done = False
        self.opened = False
        stats.started += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)

    def open(self) -> None:
        """The response started (headers or the first message); the stream counts as open."""
        if not self.opened:
            self.opened = True
            stats = self.stats
            stats.open += 1
            stats.max_open = max(stats.max_open, stats.open)

    def content(self, now: float) -> None:
        """A piece of generated content arrived (one SSE chunk or one Triton response)."""
        stats = self.stats
        if self.first is None:
            self.first = now
            if stats.start <= now < stats.end:
                stats.ttft.append(now - self.t0)
        elif stats.start <= self.last and now < stats.end:
            stats.itl.add(now - self.last)
        if stats.start <= now < stats.end:
            self.chunks_in_window += 1
        self.last = now
        self.chunks += 1

    def finish(self, now: float, streamed: bool, text: str | None = None) -> None:
        """The request completed: credit its tokens to the window."""
        self.done = True
        self._close()
        stats = self.stats
        stats.completed += 1
        inside = stats.start <= now < stats.end
        if inside:
            stats.completed_in_window += 1
            stats.latency.append(now - self.t0)
        if streamed:
            factor = 1.0
            if stats.trust_usage and self.usage_tokens and self.chunks:
                factor = self.usage_tokens / self.chunks
                stats.usage_tokens_seen += self.usage_tokens
                stats.usage_chunks_seen += self.chunks
            stats.tokens += self.chunks_in_window * factor
            return
        if not inside:
            return
        stats.ttft.append(now - self.t0)  # non-streamed: the first token arrives with the last
        if stats.trust_usage and self.usage_tokens:
            stats.tokens += self.usage_tokens
        elif text:
            stats.untrusted_texts.append(text)

    def fail(self, message: str, now: float) -> None:
        """The request failed."""
        self.done = True
        self._close()
        self.stats.error(message, now)

    def abandon(self) -> None:
        """The run ended with this request in flight: credit the chunks seen in the window, at the average
        tokens per chunk of the completed streams (one each when there are none)."""
        if not self.done:
            self.done = True
            self._close()
            self.stats.tokens += self.chunks_in_window * self.stats.tokens_per_chunk()

    def _close(self) -> None:
        self.stats.in_flight -= 1
        if self.opened:
            self.opened = False
            self.stats.open -= 1


UNBOUNDED = (0.0, math.inf)
