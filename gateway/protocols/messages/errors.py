"""Errors in Anthropic's shape: `{"type": "error", "error": {"type": ..., "message": ...}}` and its status codes.

The gateway's errors keep their meaning; their status and type become Anthropic's: 400 invalid_request_error,
401 authentication_error, 403 permission_error, 404 not_found_error, 413 request_too_large, 429 rate_limit_error,
500 api_error, 504 timeout_error, and 529 overloaded_error for a gateway at capacity (admission's queue full),
draining, or without a ready upstream (the SDKs retry a 529). The field a 400 is about is named in the message,
as Anthropic's messages do (`messages.0.content: ...`): their body has no `param`.
"""

from __future__ import annotations

import json

import orjson

from gateway.errors import (
    GatewayError,
    OverloadedError,
    ShuttingDownError,
    UpstreamUnavailableError,
)

OVERLOADED = 529
_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    499: "invalid_request_error",
    504: "timeout_error",
    OVERLOADED: "overloaded_error",
}
_OVERLOAD = (OverloadedError, ShuttingDownError, UpstreamUnavailableError)


def anthropic_status(error: GatewayError) -> int:
    """The HTTP status Anthropic's API answers this error with."""
    return OVERLOADED if isinstance(error, _OVERLOAD) else error.status


def anthropic_error_type(status: int) -> str:
    """Anthropic's error type for a status."""
    return _BY_STATUS.get(status, "api_error")


def anthropic_error_body(error: GatewayError) -> bytes:
    """The serialised error body; never fails."""
    message = error.message
    if error.param and error.param not in message:
        message = f"{error.param}: {message}"
    body = {"type": "error", "error": {"type": anthropic_error_type(anthropic_status(error)), "message": message}}
    try:
        return orjson.dumps(body)
    except TypeError:  # a lone surrogate echoed from the request: the stdlib escapes it as \\udXXX
        return json.dumps(body).encode()
