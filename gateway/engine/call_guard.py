"""Ends one upstream gRPC call early: time-to-first-token and idle timeouts, or an abort (shutdown).

The timer is armed once and re-armed lazily: each response only stores a timestamp, and when the timer fires
it either finds the deadline really passed (cancel the call) or re-arms itself for the new deadline. That keeps
the per-token cost to one clock read.

Silence is measured where responses arrive (the call's reader task), not where the consumer takes them: a
client that stops reading holds the reader back through flow control, and while it is held back (`pause`) the
upstream is not silent by its own doing, so no idle timeout fires for it (the client gets its own write timeout
in the SSE layer).
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.errors import GatewayError, UpstreamTimeoutError


class CallGuard:
    """Watches one call; `error` says why it was cancelled by the guard (None if it was not)."""

    __slots__ = (
        "_call",
        "_first_timeout",
        "_handle",
        "_idle_timeout",
        "_last",
        "_loop",
        "_paused",
        "_started",
        "error",
    )

    def __init__(self, call: Any, first_token_timeout: float | None, idle_timeout: float | None) -> None:
        self._call = call
        self._loop = asyncio.get_running_loop()
        self._first_timeout = first_token_timeout
        self._idle_timeout = idle_timeout
        self._last = self._loop.time()
        self._started = False
        self._paused = False
        self._handle: asyncio.TimerHandle | None = None
        self.error: GatewayError | None = None
        self._arm()

    def touch(self) -> None:
        """A response arrived."""
        self._last = self._loop.time()
        self._started = True

    @property
    def last_response_at(self) -> float:
        """Loop time of the last response (or of the reader's resuming after a slow client); -inf before any."""
        return self._last if self._started else float("-inf")

    def pause(self) -> None:
        """The consumer is behind: the reader waits, so the upstream's silence is not its own."""
        self._paused = True

    def resume(self) -> None:
        """The reader reads again; silence counts from now."""
        self._paused = False
        self._last = self._loop.time()

    def abort(self, error: GatewayError) -> None:
        """Cancel the call now, for `error`."""
        if self.error is None:
            self.error = error
            self._call.cancel()

    def close(self) -> None:
        """Stop watching."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _limit(self) -> float | None:
        return self._idle_timeout if self._started else self._first_timeout

    def _arm(self) -> None:
        limit = self._limit()
        if limit is not None:
            due = self._last + limit
        elif not self._started and self._idle_timeout is not None:
            due = self._loop.time() + self._idle_timeout  # no first-token limit: look again once tokens flow
        else:
            self._handle = None
            return
        self._handle = self._loop.call_at(due, self._check)

    def _check(self) -> None:
        limit = self._limit()
        if limit is not None and not self._paused and self._loop.time() >= self._last + limit:
            what = "the first token" if not self._started else "the next token"
            self.abort(UpstreamTimeoutError(f"the upstream did not send {what} within {limit:g} s"))
            self._handle = None
            return
        self._arm()
