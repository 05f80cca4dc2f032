"""Pure ASGI middleware: request ids, in-flight counts, disconnects, and the end-of-request record.

Pure ASGI (not BaseHTTPMiddleware) so that streamed bodies pass through untouched and it costs one wrapped
`send`/`receive` call per message.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.admission import GENERATION_PATHS
from gateway.errors import ClientDisconnectedError
from gateway.telemetry import GatewayMetrics, RequestContext, new_request_id, set_current_request
from gateway.telemetry.recording import record_request
from gateway.telemetry.tracing import incoming_trace_headers, start_span, trace_headers_of

REQUEST_ID_HEADER = b"x-request-id"
SESSION_ID_HEADER = "x-session-id"
MAX_SESSION_ID_CHARS = 256
# Every generation route (admission's one list) and the others.
KNOWN_ENDPOINTS = GENERATION_PATHS | {
    "/v1/conversations",
    "/v1/messages/count_tokens",
    "/v1/responses/input_tokens",
    "/v1/models",
    "/v1/organization/usage/completions",
    "/health/live",
    "/health/ready",
    "/version",
    "/metrics",
}


# Paths with ids: /v1/<collection>/{id}[/<sub-resource>[/{item_id}]]
TEMPLATED_ENDPOINTS = frozenset(
    {
        "/v1/models/{id}",
        "/v1/responses/{id}",
        "/v1/responses/{id}/cancel",
        "/v1/responses/{id}/input_items",
        "/v1/conversations/{id}",
        "/v1/conversations/{id}/items",
        "/v1/conversations/{id}/items/{item_id}",
    }
)


def endpoint_label(path: str) -> str:
    """A bounded label for a request path."""
    if path in KNOWN_ENDPOINTS:
        return path
    parts = path.split("/")  # ["", "v1", collection, id, sub-resource, item id]
    if len(parts) < 4 or len(parts) > 6 or parts[1] != "v1":
        return "other"
    label = "/".join(["", "v1", parts[2], "{id}", *parts[4:5], *(["{item_id}"] if len(parts) == 6 else [])])
    return label if label in TEMPLATED_ENDPOINTS else "other"


def final_status(context: RequestContext, sent: int, body_done: bool, failed: bool) -> int:
    """The status a request is recorded with: nginx's 499 for every client hang-up, before or after the first
    byte, streamed or not (a stream cut after its 200 went out, a stream abandoned before its first token, which
    never sent a status at all); 500 for an exception that escaped the app."""
    if isinstance(context.error, ClientDisconnectedError) or sent == 499:
        context.disconnected = True  # includes a client that stopped reading (ClientWriteTimeoutError)
    elif not body_done and not failed and sent < 400:
        context.disconnected = True  # the app ended a successful response early: its client went away
    if context.disconnected:
        return 499
    return 500 if failed else sent


class RequestTelemetryMiddleware:
    """Gives every HTTP request a context and records it when it ends."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, session_header: str = SESSION_ID_HEADER) -> None:
        self.app = app
        self.metrics = metrics
        self.session_header = session_header.lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        context = RequestContext(new_request_id(headers.get("x-request-id")), endpoint_label(scope["path"]))
        session = headers.get(self.session_header)
        if session:
            context.session = session[:MAX_SESSION_ID_CHARS]
        incoming_trace = incoming_trace_headers(headers)
        context.span = start_span(
            f"{scope['method']} {context.endpoint}", incoming_trace, {"gateway.request_id": context.request_id}
        )
        context.trace_headers = trace_headers_of(context.span, incoming_trace)
        del headers, incoming_trace  # not kept for the whole of a stream
        set_current_request(context)
        status = 500
        body_done = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, body_done
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, context.request_id.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                body_done = True
            await send(message)

        async def receive_watching(message_source: Receive = receive) -> Message:
            message = await message_source()
            if message["type"] == "http.disconnect" and not body_done:
                context.disconnected = True
            return message

        in_flight = self.metrics.in_flight.labels(context.endpoint)
        in_flight.inc()
        failed = False
        try:
            await self.app(scope, receive_watching, send_with_id)
        except BaseException:
            failed = True
            raise
        finally:
            in_flight.dec()
            status = final_status(context, status, body_done, failed)
            record_request(self.metrics, context, scope["method"], status)
            if context.span is not None:
                context.span.set_attribute("http.status_code", status)
                context.span.set_attribute("gateway.model", context.model)
                context.span.end()
            set_current_request(None)
