"""Triton's error messages become the right gateway errors."""

from __future__ import annotations

import pytest

from gateway.engine.upstream_errors import translate_stream_error
from gateway.errors import UpstreamError, UpstreamRejectedError, UpstreamUnavailableError


@pytest.mark.parametrize(
    ("message", "kind", "status"),
    [
        ("[request id: abc] unexpected shape for input 'max_tokens' for model 'ensemble'", UpstreamRejectedError, 400),
        ("in ensemble 'ensemble', temperature must be >= 0, got -1", UpstreamRejectedError, 400),
        ("in ensemble 'ensemble', forward pass failed: IndexError('list index out of range')", UpstreamError, 500),
        ("Request for unknown model: 'ensemble' is not found", UpstreamUnavailableError, 503),
        ("something odd happened", UpstreamError, 500),
    ],
)
def test_stream_errors_are_classified(message: str, kind: type[UpstreamError], status: int) -> None:
    error = translate_stream_error(message)
    assert type(error) is kind and error.status == status
    assert "[request id" not in error.message
