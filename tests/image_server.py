"""A small HTTP server for image-fetching tests: scripted routes, and a record of every request it received."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    """What a path answers: status, headers, body (or a body function writing to the socket)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    write: Callable[[io.BufferedIOBase], None] | None = None  # streams its own body (after the headers)


@dataclass
class ImageServer:
    """The routes served and the requests seen (path, Host header)."""

    host: str
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)

    def url(self, path: str, host: str | None = None) -> str:
        """An http URL of a path on this server (under another host name if given)."""
        return f"http://{host or self.host}:{self.port}{path}"


def png(width: int = 8, height: int = 8, color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A solid-colour PNG."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` pixels, with a tiny (truncated) body: a decompression bomb's
    shape, checked before any decoding."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


@contextmanager
def image_server(host: str = "127.0.0.1") -> Iterator[ImageServer]:
    """Serve routes on `host` (any free port) in a thread until the block ends."""
    state = ImageServer(host, 0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.seen.append((self.path, self.headers.get("host", "")))
            route = state.routes.get(self.path, Route(404, body=b"not found"))
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.write is None and "content-length" not in {name.lower() for name in route.headers}:
                self.send_header("content-length", str(len(route.body)))
            self.end_headers()
            try:
                if route.write is not None:
                    route.write(self.wfile)
                else:
                    self.wfile.write(route.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading, as it should past a limit

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
