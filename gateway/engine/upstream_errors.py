"""Translate gRPC and Triton errors into the gateway's exceptions (one place, never passed through raw).

What reaches the client is the cause only: Triton's error text can be a C++ stack trace (TensorRT-LLM's
assertions name their source files and lines, each frame an address), a Python backend's traceback or its
`At:` section, or a gRPC status naming internal addresses. The first useful line is kept, without source
paths, line numbers, addresses or hex pointers; the whole text is logged here, for the operator.
"""

from __future__ import annotations

import logging
import re

import grpc

from gateway.errors import (
    UpstreamError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

logger = logging.getLogger(__name__)

MAX_CAUSE_CHARS = 300
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
# Refusals whose words say nothing of the client's part in them: what the client can do instead.
_EXPLAINED = {
    # NVIDIA's multimodal_encoders (and the dev stand-in) for a prompt-table family, run by the multimodal
    # ensemble for every request: a text-only request cannot go through that ensemble.
    "no preprocessed image tensor to encode": "this model's multimodal ensemble needs an image in every request "
    "(its vision encoder runs for each one); send an image, or serve the model through tensorrt_llm_bls "
    "(--triton-model tensorrt_llm_bls), which skips the encoder for text-only requests",
}
# Where a stack trace starts: a C++ frame ("1       0x7f..."), the Python backend's "At:" section.
_TRACE_START = re.compile(r"\n\s*(?:\d+\s+0x[0-9a-fA-F]+|At:\s*\n)")
_PYTHON_TRACEBACK = "Traceback (most recent call last):"
_NOISE = [
    re.compile(r"\[TensorRT-LLM\]\[[A-Z]+\]\s*"),  # TensorRT-LLM's log tags
    re.compile(r"\b\w+(?:::\w+)+:\s*"),  # C++ exception classes (tensorrt_llm::common::TllmException: )
    re.compile(r"\(?(?<![\w.])(?:/[\w.@+~-]+)+(?:[:(]\d+\)?)*\)?"),  # absolute paths, with ":line" or "(line)"
    re.compile(r"\b[\w-]+\.(?:cpp|cc|cu|h|hpp|py)(?:[:(]\d+\)?)+"),  # relative source files with a line
    re.compile(r"\b(?:ipv4|ipv6|unix|dns):\S+"),  # gRPC's peer addresses
    re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"),  # IPv4 addresses, with a port
    re.compile(r"\b0x[0-9a-fA-F]{4,}\b"),  # pointers
]


def client_safe_cause(message: str) -> str:
    """The cause of an upstream error as a client may see it (see the module doc)."""
    text = _REQUEST_ID_PREFIX.sub("", message)
    if _PYTHON_TRACEBACK in text:
        before, _, trace = text.partition(_PYTHON_TRACEBACK)
        # The exception itself is the traceback's last unindented line.
        last = [line for line in trace.splitlines() if line.strip() and not line.startswith((" ", "\t"))]
        text = (before.strip() + " " + (last[-1] if last else "")).strip()
    text = _TRACE_START.split(text, maxsplit=1)[0]
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    for pattern in _NOISE:
        line = pattern.sub("", line)
    line = re.sub(r"\s+", " ", line.replace("()", "")).strip(" :,;")
    if len(line) > MAX_CAUSE_CHARS:
        line = line[: MAX_CAUSE_CHARS - 1] + "…"
    return line or "no details"


def translate_stream_error(message: str) -> UpstreamError:
    """An error carried in a ModelStreamInfer response."""
    raw = _REQUEST_ID_PREFIX.sub("", message).strip()
    cause = client_safe_cause(raw)
    if cause != raw:
        logger.warning("Triton error, in full: %s", raw)
    lowered = raw.lower()
    explained = next((text for words, text in _EXPLAINED.items() if words in lowered), None)
    if explained is not None:
        return UpstreamRejectedError(f"Triton rejected the request: {explained}")
    if "not found" in lowered or "unavailable" in lowered or "not ready" in lowered:
        return UpstreamUnavailableError(f"the upstream model is not available: {cause}")
    if not _SERVER_FAULT.search(raw) and any(word in lowered for word in _CLIENT_FAULT_WORDS):
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
