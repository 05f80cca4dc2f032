"""Graceful shutdown: on SIGTERM/SIGINT stop admitting, let streams finish for `drain_timeout`, end the rest.

uvicorn handles the signal itself (stops accepting connections, then waits for open ones); this wraps its
handler so that the gateway also starts draining: readiness turns false and new generation requests get 503.
After `drain_timeout` every generation still running is ended with a "shutting down" error (an SSE error event
for streams), which stops its upstream work, so uvicorn's wait ends.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from gateway.api.admission import DrainState
from gateway.errors import ShuttingDownError

logger = logging.getLogger(__name__)


class DrainCoordinator:
    """Turns a termination signal into an orderly drain."""

    def __init__(self, drain: DrainState, drain_timeout: float, abort_all: Callable[[ShuttingDownError], int]) -> None:
        self.drain = drain
        self.drain_timeout = drain_timeout
        self._abort_all = abort_all
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def install(self) -> None:
        """Chain onto the current SIGTERM and SIGINT handlers (call from the running event loop)."""
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            signal.signal(sig, self._chained(previous))

    def _chained(self, previous: Any) -> Callable[[int, FrameType | None], None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.begin)
            if callable(previous):
                previous(signum, frame)

        return handler

    def begin(self) -> None:
        """Start draining (idempotent)."""
        if self.drain.draining or self._loop is None:
            return
        self.drain.draining = True
        logger.info("draining: no new requests; running streams get %.0f s to finish", self.drain_timeout)
        self._timer = self._loop.call_later(self.drain_timeout, self._end_the_rest)

    def _end_the_rest(self) -> None:
        ended = self._abort_all(ShuttingDownError("The server is shutting down and ended this request."))
        if ended:
            logger.warning("drain timeout: ended %d running generations", ended)

    def cancel(self) -> None:
        """Forget a pending drain timer (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
