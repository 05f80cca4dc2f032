"""Translate gRPC and Triton errors into the gateway's exceptions (one place, never passed through raw)."""

from __future__ import annotations

import re

import grpc

from gateway.errors import (
    UpstreamError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

# Triton prefixes messages with "[request id: ...]" and sometimes names internal steps; keep the cause only.
_REQUEST_ID_PREFIX = re.compile(r"^\s*\[request id: [^\]]*\]\s*")
# An exception's repr or a traceback in the message means the server side broke, whatever the wording.
_SERVER_FAULT = re.compile(r"\b\w+(Error|Exception)\(|Traceback|internal error", re.IGNORECASE)
_CLIENT_FAULT_WORDS = (
    "invalid",
    "unexpected",
    "expected",
    "must be",
    "must not",
    "exceed",
    "out of range",
    "too long",
    "is empty",
)


def translate_stream_error(message: str) -> UpstreamError:
    """An error carried in a ModelStreamInfer response."""
    cause = _REQUEST_ID_PREFIX.sub("", message).strip()
    lowered = cause.lower()
    if "not found" in lowered or "unavailable" in lowered or "not ready" in lowered:
        return UpstreamUnavailableError(f"the upstream model is not available: {cause}")
    if not _SERVER_FAULT.search(cause) and any(word in lowered for word in _CLIENT_FAULT_WORDS):
        return UpstreamRejectedError(f"Triton rejected the request: {cause}")
    return UpstreamError(f"Triton failed the request: {cause}")


def translate_rpc_error(exc: grpc.aio.AioRpcError) -> UpstreamError:
    """A failed gRPC call."""
    code = exc.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return UpstreamUnavailableError("the upstream Triton server is unavailable")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return UpstreamTimeoutError("the upstream Triton server did not answer in time")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return translate_stream_error(exc.details() or "invalid argument")
    return UpstreamError(f"the upstream call failed ({code.name})")
