"""Sealed state handed to clients: what only this deployment can read back, and can tell was not changed.

Responses' `reasoning.encrypted_content` gives a `store: false` client its reasoning as an opaque blob that it
sends back with later input: the gateway must read it back on any replica, and refuse one that was altered or
sealed elsewhere. Authenticated encryption (AES-256-GCM: confidentiality and integrity) under a key derived with
HKDF-SHA256 from the deployment's secret (`--state-key`, `GATEWAY_STATE_KEY`), which every replica and worker
must share; `purpose` is bound into each blob, so one kind of blob is never accepted as another.

Blob: `gw1.` + base64url(12-byte random nonce + ciphertext + 16-byte tag), no padding.

Messages' thinking blocks carry their text in the clear with a `signature`: text the client may read but must not
change. That is a MAC (HMAC-SHA256 under a second key derived from the same secret, `purpose` bound in), not a
seal: `gs1.` + base64url(32-byte tag), no padding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import InvalidRequestError

logger = logging.getLogger(__name__)

PREFIX = "gw1."
SIGNATURE_PREFIX = "gs1."
NONCE_BYTES = 12
TAG_BYTES = 16
_KEY_INFO = b"trtllm-gateway sealed state v1"
_SIGNING_KEY_INFO = b"trtllm-gateway signed state v1"


def deployment_secret(configured: str | None) -> str:
    """The configured secret; without one, a random one made now, and a warning: blobs sealed with it die with
    the process, and replicas cannot open each other's."""
    if configured is not None:
        return configured
    logger.warning(
        "no --state-key (GATEWAY_STATE_KEY): encrypted reasoning is sealed with a key generated at start-up, which "
        "only this gateway can open until it restarts; give every replica the same key"
    )
    return secrets.token_urlsafe(32)


class Sealer:
    """Seals text for clients and opens it when they send it back."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the state key must not be empty")
        self._aead = AESGCM(_derived_key(secret, _KEY_INFO))
        self._signing_key = _derived_key(secret, _SIGNING_KEY_INFO)

    def sign(self, text: str, purpose: bytes) -> str:
        """A signature of `text` for `purpose` that only this deployment can make."""
        mac = hmac.new(self._signing_key, purpose + b"\x00" + text.encode(), hashlib.sha256).digest()
        return SIGNATURE_PREFIX + base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def verify(self, text: str, signature: str, purpose: bytes) -> bool:
        """Whether `signature` is this deployment's signature of `text` for `purpose` (constant-time)."""
        return hmac.compare_digest(self.sign(text, purpose).encode(), signature.encode("utf-8", "replace"))

    def seal(self, text: str, purpose: bytes) -> str:
        """`text` as a blob only this deployment can open, for `purpose`."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, text.encode(), purpose)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, blob: str, purpose: bytes, param: str) -> str:
        """The text sealed in `blob`; a 400 naming `param` when it was altered, sealed by another deployment (or
        key) or for another purpose, or is no blob of ours."""
        try:
            if not blob.startswith(PREFIX):
                raise ValueError("not a sealed blob")
            payload = blob[len(PREFIX) :]
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            if len(raw) < NONCE_BYTES + TAG_BYTES:
                raise ValueError("too short")
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose).decode()
        except (ValueError, binascii.Error, InvalidTag, UnicodeDecodeError):
            raise InvalidRequestError(
                "This encrypted content cannot be read: it was changed, or sealed by another deployment or with "
                "another --state-key",
                param=param,
                code="invalid_encrypted_content",
            ) from None


def _derived_key(secret: str, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret.encode())
