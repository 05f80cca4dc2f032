"""A small HTTP/1.1 client on asyncio's Protocol API with server-sent-events parsing, cheap per event.

One keep-alive connection per load-generator stream. The parser handles `Content-Length` and chunked bodies and
hands each SSE `data:` payload to a sink with the time its bytes arrived, so latency is measured at the socket.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

_HEAD, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _LENGTH, _UNTIL_CLOSE, _IDLE = range(8)


class EventSink(Protocol):
    """Receives what one response carries."""

    def on_headers(self, status: int, now: float) -> None:
        """Status line and headers are in."""

    def on_event(self, event: str, data: bytes, now: float) -> None:
        """One SSE event (type, joined data lines)."""

    def on_body(self, body: bytes, now: float) -> None:
        """The whole body of a non-SSE response."""


@dataclass(frozen=True)
class HttpTarget:
    """Where requests go: scheme, host, port and the path prefix of the base URL."""

    host: str
    port: int
    tls: bool
    prefix: str

    @classmethod
    def parse(cls, base_url: str) -> HttpTarget:
        """From a base URL such as http://127.0.0.1:8000 or https://host/v1."""
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        return cls(parts.hostname or "127.0.0.1", port, tls, parts.path.rstrip("/"))

    def request_bytes(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """A complete POST request (the same bytes are sent for every request of one prompt)."""
        lines = [
            f"POST {self.prefix}{path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ResponseError(Exception):
    """The connection broke or the response could not be parsed."""


class HttpConnection(asyncio.Protocol):
    """One connection; `exchange()` sends a request and resolves when its response has been read."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._state = _IDLE
        self._sink: EventSink | None = None
        self._done: asyncio.Future[None] | None = None
        self._left = 0
        self._sse = False
        self._keep_alive = True
        self._events = bytearray()
        self._body = bytearray()
        self.closed = False

    @classmethod
    async def open(cls, target: HttpTarget) -> HttpConnection:
        """Connect to the target."""
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if target.tls else None
        _, protocol = await loop.create_connection(
            cls, target.host, target.port, ssl=context, server_hostname=target.host if context else None
        )
        return protocol

    # ---- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        """A body delimited by the close ends here; anything else in progress fails."""
        self.closed = True
        if self._state == _UNTIL_CLOSE:
            self._finish_body(time.monotonic())
            self._complete()
        elif self._done is not None and not self._done.done():
            self._done.set_exception(ResponseError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        """Parse what arrived, timestamped on arrival."""
        now = time.monotonic()
        self._buf += data
        try:
            self._parse(now)
        except Exception as exc:  # a malformed response fails this exchange, not the event loop
            if self._done is not None and not self._done.done():
                self._done.set_exception(ResponseError(f"bad response: {exc!r}"))
            self.close()

    # ---- API --------------------------------------------------------------------------------------------------

    async def exchange(self, request: bytes, sink: EventSink) -> bool:
        """Send `request`, feed the response to `sink`; returns whether the connection can be reused."""
        if self.transport is None or self.closed:
            raise ResponseError("connection closed")
        self._sink = sink
        self._state = _HEAD
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        await self._done
        return self._keep_alive and not self.closed

    def close(self) -> None:
        """Close the socket."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # ---- parsing ----------------------------------------------------------------------------------------------

    def _parse(self, now: float) -> None:
        buf = self._buf
        while buf:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).decode("latin-1")
                del buf[: end + 4]
                self._start_body(head, now)
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
                del buf[: end + 2]
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._left = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                take = min(self._left, len(buf))
                self._on_data(bytes(buf[:take]), now)
                del buf[:take]
                self._left -= take
                if self._left == 0:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buf) < 2:
                    return
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:
                    self._finish_body(now)
                    self._complete()
            elif state == _LENGTH:
                take = min(self._left, len(buf))
                self._on_data(bytes(buf[:take]), now)
                del buf[:take]
                self._left -= take
                if self._left == 0:
                    self._finish_body(now)
                    self._complete()
            elif state == _UNTIL_CLOSE:
                self._on_data(bytes(buf), now)
                buf.clear()
            else:  # bytes nobody asked for: ignore
                buf.clear()

    def _start_body(self, head: str, now: float) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        self._keep_alive = headers.get("connection") != "close" and parts[0] == "HTTP/1.1"
        self._sse = headers.get("content-type", "").startswith("text/event-stream")
        self._events.clear()
        self._body.clear()
        assert self._sink is not None
        self._sink.on_headers(status, now)
        if "chunked" in headers.get("transfer-encoding", ""):
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            self._left = int(headers["content-length"])
            self._state = _LENGTH
            if self._left == 0:
                self._finish_body(now)
                self._complete()
        else:
            self._state = _UNTIL_CLOSE
            self._keep_alive = False

    def _on_data(self, data: bytes, now: float) -> None:
        if not self._sse:
            self._body += data
            return
        events = self._events
        events += data
        if b"\r" in events:
            events[:] = events.replace(b"\r\n", b"\n")
        start = 0
        while True:
            end = events.find(b"\n\n", start)
            if end < 0:
                break
            self._dispatch(bytes(events[start:end]), now)
            start = end + 2
        if start:
            del events[:start]

    def _dispatch(self, raw: bytes, now: float) -> None:
        event = "message"
        data: list[bytes] = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode()
        if data or event != "message":
            assert self._sink is not None
            self._sink.on_event(event, b"\n".join(data), now)

    def _finish_body(self, now: float) -> None:
        assert self._sink is not None
        if self._sse:
            if self._events.strip():
                self._dispatch(bytes(self._events), now)
        else:
            self._sink.on_body(bytes(self._body), now)

    def _complete(self) -> None:
        self._state = _IDLE
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
