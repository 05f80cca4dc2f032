"""Signatures of the thinking the gateway returns, so that only its own thinking comes back into a prompt.

Clients send earlier assistant turns back with their `thinking` blocks, and the template renders that text as the
model's own reasoning: a client could otherwise put words in the model's mouth. The gateway signs each thinking
text it returns with a per-deployment key (HMAC-SHA256; `--thinking-signature-key`, shared by workers and to be
shared by replicas), and a thinking block whose signature does not match its text is a 400, as Anthropic's is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

_VERSION = "tg1."  # lets a later scheme tell its signatures apart
_DOMAIN = b"trtllm-gateway messages thinking\x00"


class ThinkingSigner:
    """Signs and verifies thinking texts with one key."""

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        self._key = hashlib.sha256(_DOMAIN + key.encode()).digest()

    def sign(self, thinking: str) -> str:
        """The signature of a thinking text."""
        mac = hmac.new(self._key, thinking.encode(), hashlib.sha256).digest()
        return _VERSION + base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def verify(self, thinking: str, signature: str) -> bool:
        """Whether `signature` is this key's signature of `thinking` (compared in constant time)."""
        return hmac.compare_digest(self.sign(thinking).encode(), signature.encode("utf-8", "replace"))


@lru_cache(maxsize=4)
def thinking_signer(key: str) -> ThinkingSigner:
    """The signer for a key (one per app; cached so that requests do not derive it again)."""
    return ThinkingSigner(key)
