"""HTTP connections: a header timeout, a limit on open connections per process, an end to unread bodies.

uvicorn's httptools protocol has none of these: a connection that never completes its headers stays open for
good (slowloris), and every accepted connection holds a file descriptor until its client closes it, so a thousand
idle half-requests under `ulimit -n 1024` take every descriptor and new connections fail with nothing logged.
`GuardedHttpToolsProtocol`, given to uvicorn as `http=`, adds with one timer per connection (none per message):

- Headers: a request's headers must be complete within `header_timeout_s` of the connection opening or of the
  request's first byte, else a 408 in OpenAI's shape (nothing, when not a byte came) and the connection closes.
- The limit: at `max_connections` open connections, a new one first closes the connection that has waited longest
  without a request in progress (idle keep-alive, or headers still arriving), so idle and trickling clients cannot
  lock anyone out; when every connection has a request in progress, the newcomer gets a 429 and is closed.
- Unread bodies: a response sent before the request's body was read (a 401, a 413) leaves the client sending; its
  connection is closed if the body has not ended within `body_timeout_s`.

Each of these is counted in `gateway_connections_dropped_total{reason}` and logged at most once per 10 s. The
body timeout itself (a 408 for a body that does not arrive) is api/request_body.py's. The per-process state, a
`ConnectionGuard`, reaches the protocol through the app's lifespan state, so each worker process has its own.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from http import HTTPStatus
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.errors import GatewayError, OverloadedError, RequestTimeoutError
from gateway.telemetry.metrics import GatewayMetrics

logger = logging.getLogger(__name__)

GUARD_STATE_KEY = "gateway.connection_guard"
FD_RESERVE = 128  # descriptors kept for everything else: Triton channels, logs, metric files, the listener
LOG_INTERVAL_S = 10.0
DROP_REASONS = ("refused", "idle_evicted", "header_timeout", "unread_body")


def connection_limit(configured: int | None) -> int:
    """The configured limit, else the file-descriptor limit less a reserve (what the process can hold)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured or 1 << 20
    if configured is None:
        return max(soft - FD_RESERVE, soft // 2)
    if configured > soft - FD_RESERVE:
        logger.warning(
            "--max-connections %d leaves fewer than %d of the %d file descriptors (ulimit -n) for everything else: "
            "new connections may fail without an answer before the limit is reached",
            configured,
            FD_RESERVE,
            soft,
        )
    return configured


def raw_response(error: GatewayError, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete HTTP/1.1 response with the error's JSON body that closes the connection."""
    body = orjson.dumps(error.to_body())
    lines = [f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}"]
    lines += ["content-type: application/json", f"content-length: {len(body)}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class RateLimitedWarning:
    """A warning logged at most once per `interval_s`, with how many times it happened since the last line."""

    def __init__(self, message: str, interval_s: float = LOG_INTERVAL_S) -> None:
        self._message = message  # one %d: the count
        self._interval_s = interval_s
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None

    def event(self) -> None:
        """Count one occurrence; log now if nothing was logged within the interval."""
        self._pending += 1
        if self._timer is None:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            self._timer = None
            return
        logger.warning(self._message, self._pending)
        self._pending = 0
        self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._flush)


class ConnectionGuard:
    """The process's open connections, oldest idle first, the limits, and what was dropped (see the module doc)."""

    def __init__(
        self, header_timeout_s: float, body_timeout_s: float, max_connections: int, metrics: GatewayMetrics
    ) -> None:
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_connections = max_connections
        self.refusal = raw_response(
            OverloadedError(f"The server has {max_connections} open connections, each busy; try again."),
            (("retry-after", "1"),),
        )
        self.header_timeout = raw_response(
            RequestTimeoutError(f"The request headers were not received within {header_timeout_s:g} s.")
        )
        self._open: set[GuardedHttpToolsProtocol] = set()
        self._idle: dict[GuardedHttpToolsProtocol, None] = {}  # insertion order: longest idle first
        self._gauge = metrics.connections_open
        self._dropped = {reason: metrics.connections_dropped.labels(reason) for reason in DROP_REASONS}
        self._warnings = {
            "refused": RateLimitedWarning(
                f"connection limit ({max_connections}) reached with a request in progress on each: "
                "%d new connection(s) refused with a 429"
            ),
            "idle_evicted": RateLimitedWarning(
                f"connection limit ({max_connections}) reached: closed %d connection(s) that had no request in "
                "progress (the longest waiting first) to make room"
            ),
            "header_timeout": RateLimitedWarning(
                f"closed %d connection(s) whose request headers were not complete within {header_timeout_s:g} s"
            ),
            "unread_body": RateLimitedWarning(
                f"closed %d connection(s) still sending a body {body_timeout_s:g} s after their response"
            ),
        }

    def admit(self, connection: GuardedHttpToolsProtocol) -> bool:
        """Take a new connection in, making room if needed; False: refuse it."""
        if len(self._open) >= self.max_connections:
            oldest = next(iter(self._idle), None)
            if oldest is None:
                self.dropped("refused")
                return False
            self._forget(oldest)
            oldest.close_now()
            self.dropped("idle_evicted")
        self._open.add(connection)
        self._idle[connection] = None
        self._gauge.inc()
        return True

    def busy(self, connection: GuardedHttpToolsProtocol) -> None:
        """A request is in progress on the connection."""
        self._idle.pop(connection, None)

    def idle(self, connection: GuardedHttpToolsProtocol) -> None:
        """The connection has no request in progress (from now: it goes to the end of the line)."""
        if connection in self._open:
            self._idle.pop(connection, None)
            self._idle[connection] = None

    def closed(self, connection: GuardedHttpToolsProtocol) -> None:
        """The connection is gone."""
        if connection in self._open:
            self._forget(connection)

    def dropped(self, reason: str) -> None:
        """Count and (rate-limited) log a connection the gateway closed on its own."""
        self._dropped[reason].inc()
        self._warnings[reason].event()

    def _forget(self, connection: GuardedHttpToolsProtocol) -> None:
        self._open.discard(connection)
        self._idle.pop(connection, None)
        self._gauge.dec()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header timeout, the connection limit and the unread-body end."""

    # Slots, not instance attributes: uvicorn's protocol sets 28, and three more would take its instance dict past
    # the 30 keys a class's instances share, to a dict of its own (1.3 KB more per connection).
    __slots__ = ("_deadline", "_guard", "_request_begun")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard: ConnectionGuard | None = self.app_state.get(GUARD_STATE_KEY)
        self._deadline: asyncio.TimerHandle | None = None  # the one timer: headers, or an unread body
        self._request_begun = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Admit (or refuse) the connection and start waiting for its first request's headers."""
        super().connection_made(transport)
        guard = self._guard
        if guard is None:
            return
        if not guard.admit(self):
            transport.write(guard.refusal)
            transport.close()  # nothing is read after this: no request starts on a refused connection
            return
        self._arm(guard.header_timeout_s, self._headers_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection."""
        self._disarm()
        if self._guard is not None:
            self._guard.closed(self)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """A request's first byte: its headers are due within the header timeout."""
        super().on_message_begin()
        self._request_begun = True
        if self._deadline is None and self._guard is not None:
            self._arm(self._guard.header_timeout_s, self._headers_timed_out)

    def on_headers_complete(self) -> None:
        """The headers are in: the request is in progress."""
        self._disarm()
        self._request_begun = False
        if self._guard is not None:
            self._guard.busy(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The body is in; one the response did not wait for ends its deadline, and the keep-alive wait starts."""
        super().on_message_complete()
        if self._deadline is not None and self.cycle.response_complete:
            self._disarm()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def on_response_complete(self) -> None:
        """The response is out: the connection waits for its next request, or for the end of an unread body."""
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        guard = self._guard
        if guard is None or self.transport.is_closing() or pipelined:
            return
        if self.cycle.more_body:
            self._arm(guard.body_timeout_s, self._body_left_unread)
        guard.idle(self)

    def close_now(self) -> None:
        """Close the connection (the guard makes room for a new one)."""
        self._disarm()
        self.transport.close()

    def _arm(self, delay_s: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay_s, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_timed_out(self) -> None:
        self._deadline = None
        if self._guard is None or self.transport.is_closing():
            return
        if self._request_begun:  # a client that sent nothing gets nothing, as at the end of a keep-alive wait
            self.transport.write(self._guard.header_timeout)
        self.transport.close()
        self._guard.dropped("header_timeout")

    def _body_left_unread(self) -> None:
        self._deadline = None
        if self._guard is None or self.transport.is_closing():
            return
        self.transport.close()
        self._guard.dropped("unread_body")
