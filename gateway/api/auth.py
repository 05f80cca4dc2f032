"""API keys: `Authorization: Bearer <key>` or `x-api-key: <key>` (Anthropic's clients), compared in constant time
against every configured key."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.asgi_errors import send_error
from gateway.api.store_access import set_owner
from gateway.errors import AuthenticationError

OBSERVABILITY_PREFIXES = ("/health/", "/metrics")


def _digest(key: bytes) -> bytes:
    # Comparing fixed-length digests keeps the comparison time independent of the keys' lengths.
    return hashlib.sha256(key).digest()


class ApiKeyMiddleware:
    """401 unless the request carries one of the keys; health and metrics stay open unless protected."""

    def __init__(self, app: ASGIApp, keys: Iterable[str], protect_observability: bool) -> None:
        self.app = app
        # A key is compared as the UTF-8 bytes a client sends for it (header bytes are never decoded), so a
        # non-ASCII key matches too, although RFC 6750 tokens are ASCII and some clients cannot send others.
        self._digests = [_digest(k.encode()) for k in keys if k]
        self.protect_observability = protect_observability

    def _authorized(self, header: bytes | None, api_key: bytes | None) -> bytes | None:
        """The key's digest when it is one of the keys."""
        if header is not None and header[:7].lower() == b"bearer ":
            given = _digest(header[7:].strip())
        elif api_key is not None:
            given = _digest(api_key.strip())
        else:
            return None
        matched = False
        for expected in self._digests:  # no early exit: every key is compared
            matched |= hmac.compare_digest(given, expected)
        return given if matched else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request."""
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        if not self.protect_observability and scope["path"].startswith(OBSERVABILITY_PREFIXES):
            await self.app(scope, receive, send)
            return
        header: bytes | None = None
        api_key: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization" and header is None:
                header = value
            elif name == b"x-api-key" and api_key is None:
                api_key = value
        digest = self._authorized(header, api_key)
        if digest is None:
            error = AuthenticationError(
                "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
                if header is not None or api_key is not None
                else "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
            )
            await send_error(scope, send, error, {"WWW-Authenticate": "Bearer"})
            return
        set_owner(scope, "key:" + digest.hex())  # what it stores is this key's (its digest; never the key)
        await self.app(scope, receive, send)
