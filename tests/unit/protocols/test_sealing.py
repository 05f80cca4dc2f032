"""Sealed blobs: readable back by any process with the same key, refused when altered, foreign or misused."""

from __future__ import annotations

import logging

import pytest

from gateway.errors import InvalidRequestError
from gateway.protocols.sealing import PREFIX, SIGNATURE_PREFIX, Sealer, deployment_secret


def test_a_blob_opens_with_the_same_key_in_another_sealer() -> None:
    blob = Sealer("shared-deployment-key-1234").seal("I think, therefore…", b"purpose")
    assert blob.startswith(PREFIX) and "think" not in blob
    assert Sealer("shared-deployment-key-1234").open(blob, b"purpose", "x") == "I think, therefore…"
    assert Sealer("shared-deployment-key-1234").seal("same", b"p") != Sealer("shared-deployment-key-1234").seal(
        "same", b"p"
    )  # a fresh nonce each time


@pytest.mark.parametrize("change", ["flip", "truncate", "other_key", "other_purpose", "garbage", "empty"])
def test_an_altered_or_foreign_blob_is_a_400_naming_the_field(change: str) -> None:
    sealer = Sealer("shared-deployment-key-1234")
    blob = sealer.seal("text", b"purpose")
    purpose = b"purpose"
    if change == "flip":
        middle = len(blob) // 2
        blob = blob[:middle] + ("A" if blob[middle] != "A" else "B") + blob[middle + 1 :]
    elif change == "truncate":
        blob = blob[:20]
    elif change == "other_key":
        blob = Sealer("another-deployment-key-5678").seal("text", b"purpose")
    elif change == "other_purpose":
        purpose = b"something else"
    elif change == "garbage":
        blob = PREFIX + "!!!not base64!!!"
    else:
        blob = ""
    with pytest.raises(InvalidRequestError) as refused:
        sealer.open(blob, purpose, "input[3].encrypted_content")
    assert refused.value.param == "input[3].encrypted_content"
    assert refused.value.status == 400


def test_without_a_configured_key_one_is_made_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert deployment_secret("configured-key-123456") == "configured-key-123456"
    with caplog.at_level(logging.WARNING):
        made, other = deployment_secret(None), deployment_secret(None)
    assert made != other and len(made) >= 32
    assert "same key" in caplog.text


def test_a_signature_verifies_with_the_same_key_text_and_purpose_only() -> None:
    signature = Sealer("shared-deployment-key-1234").sign("visible text", b"purpose")
    assert signature.startswith(SIGNATURE_PREFIX)
    assert Sealer("shared-deployment-key-1234").verify("visible text", signature, b"purpose")
    assert not Sealer("another-deployment-key-5678").verify("visible text", signature, b"purpose")
    assert not Sealer("shared-deployment-key-1234").verify("visible text!", signature, b"purpose")
    assert not Sealer("shared-deployment-key-1234").verify("visible text", signature, b"other purpose")
    assert not Sealer("shared-deployment-key-1234").verify("visible text", signature[:-1], b"purpose")
