"""The gateway's exceptions: one hierarchy, each class carrying its OpenAI error rendering.

    GatewayError                      500 server_error         (base; a bug if raised as is)
    ├── InvalidRequestError           400 invalid_request_error (bad field; `param` names it)
    │   └── UnsupportedFeatureError   400 invalid_request_error (a known field we cannot honour yet)
    ├── AuthenticationError           401 invalid_request_error  (code invalid_api_key, as OpenAI)
    ├── PermissionDeniedError         403 invalid_request_error  (a key without the role an endpoint needs)
    ├── NotFoundError                 404 not_found_error        (unknown model or route)
    ├── RequestTimeoutError           408 invalid_request_error  (headers or body not received in time)
    ├── PayloadTooLargeError          413 invalid_request_error
    ├── ClientDisconnectedError       499 client_closed_request  (nobody reads the body; for logs and metrics)
    │   └── ClientWriteTimeoutError   499 client_timeout         (the client stopped reading the stream)
    ├── OverloadedError               429 rate_limit_error       (admission control; with Retry-After)
    ├── RateLimitError                429 requests | tokens      (a key's rates or concurrency; rate headers)
    ├── QuotaExceededError            429 insufficient_quota     (a key's daily or monthly token budget)
    ├── ShuttingDownError             503 service_unavailable    (draining on SIGTERM)
    ├── UpstreamError                 500 server_error           (Triton failed the request)
    │   ├── UpstreamRejectedError     400 invalid_request_error  (Triton refused the request's values)
    │   ├── UpstreamUnavailableError  503 service_unavailable    (Triton unreachable or model not ready)
    │   └── UpstreamTimeoutError      504 timeout
    └── ConfigurationError            start-up problem; never sent to a client

`api/errors.py` turns any of them into `{"error": {"message", "type", "param", "code"}}` in one place.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class: an error with an HTTP status and an OpenAI error type."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None
    headers: dict[str, str] | None = None  # response headers that go with it (Retry-After, rate limits)

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, dict[str, str | None]]:
        """The OpenAI error body for this error."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequestError(GatewayError):
    """The request is malformed or one of its fields has an invalid value."""

    status = 400
    type = "invalid_request_error"


class UnsupportedFeatureError(InvalidRequestError):
    """A known OpenAI field whose value the gateway cannot honour yet (never silently ignored)."""

    code = "unsupported_parameter"


class AuthenticationError(GatewayError):
    """Missing or wrong API key (OpenAI sends these as invalid_request_error)."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    """A valid key that may not use this endpoint."""

    status = 403
    type = "invalid_request_error"
    code = "insufficient_permissions"


class NotFoundError(GatewayError):
    """Unknown model or route."""

    status = 404
    type = "not_found_error"


class RequestTimeoutError(GatewayError):
    """The client did not send its request (headers or body) in time."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLargeError(GatewayError):
    """The request body is larger than allowed."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class ClientDisconnectedError(GatewayError):
    """The client left before its response was ready (nginx's 499)."""

    status = 499
    type = "client_closed_request"


class ClientWriteTimeoutError(ClientDisconnectedError):
    """The client stopped reading: a write of its stream did not complete in time (never the upstream's fault)."""

    type = "client_timeout"
    code = "client_write_timeout"


class OverloadedError(GatewayError):
    """Too many requests in flight and in the wait queue."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class RateLimitError(GatewayError):
    """A key's requests or tokens per minute, or its concurrent requests, are used up (OpenAI's shape: the type
    names the limit, `requests` or `tokens`)."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, kind: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.type = kind
        self.headers = headers


class QuotaExceededError(GatewayError):
    """A key's token budget for the day or the month is spent."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self, message: str, *, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.headers = headers


class ShuttingDownError(GatewayError):
    """The gateway is draining before it stops."""

    status = 503
    type = "service_unavailable"
    code = "server_shutting_down"


class UpstreamError(GatewayError):
    """Triton failed the request for a reason that is not the client's."""

    status = 500
    type = "server_error"
    code = "upstream_error"


class UpstreamRejectedError(UpstreamError):
    """Triton refused a value of the request (for instance an out-of-range parameter)."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_rejected"


class UpstreamUnavailableError(UpstreamError):
    """Triton cannot be reached or the model is not ready."""

    status = 503
    type = "service_unavailable"
    code = "upstream_unavailable"


class UpstreamTimeoutError(UpstreamError):
    """Triton did not answer in time."""

    status = 504
    type = "timeout"
    code = "upstream_timeout"


class ConfigurationError(Exception):
    """The gateway or the dev stack cannot start with the given settings."""
