"""The per-request context shared by the middleware, the routers and the log filter (via a contextvar).

Tasks copy contextvars, so the context object is mutated in place rather than re-set: the SSE body task and
the exception handlers write into the same object that the middleware reads when the request ends.
"""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,96}$")


@dataclass
class RequestContext:
    """What is known about one HTTP request while it runs."""

    request_id: str
    endpoint: str
    started: float = field(default_factory=time.perf_counter)
    model: str = "unknown"
    stream: bool = False
    streams: list[Any] = field(default_factory=list)  # the request's choices (core.choices.Choice), once planned
    error: Exception | None = None
    disconnected: bool = False
    span: Any = None  # the request's OpenTelemetry span, when tracing records
    trace_headers: dict[str, str] = field(default_factory=dict)  # W3C context to pass upstream
    session: str | None = None  # the client's session id header, for session affinity
    user: str | None = None  # the request body's `user`, for session affinity when configured
    upstreams: list[str] = field(default_factory=list)  # the upstream address of each generation (for the log)
    tenant: str | None = None  # the API key's tenant (never the key), for the access line
    priority: float | None = None  # the engine's request priority (TensorRT-LLM's 0 to 1), from the API key


_current: ContextVar[RequestContext | None] = ContextVar("gateway_request", default=None)


def new_request_id(incoming: str | None) -> str:
    """The client's X-Request-Id when it is a safe token, else a fresh uuid."""
    if incoming and _SAFE_REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


def current_request() -> RequestContext | None:
    """The context of the request being handled, if any."""
    return _current.get()


def set_current_request(context: RequestContext | None) -> None:
    """Install the context for the running request (middleware only)."""
    _current.set(context)
