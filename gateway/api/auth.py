"""API keys: `Authorization: Bearer <key>` or `x-api-key: <key>` (Anthropic's clients), looked up by its SHA-256
among the keys in force (tenants/keys.py).

The key found goes into the ASGI scope (`api_key_of`) for model access, limits and accounting, its owner into
the scope's state for the store (store_access.py), and its tenant and priority into the request context (the
access line, the engine's request priority).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.asgi_errors import send_error
from gateway.api.store_access import set_owner
from gateway.errors import AuthenticationError
from gateway.telemetry import current_request
from gateway.tenants.keys import ApiKey, KeyRing
from gateway.tenants.priority import ENGINE_PRIORITY, NORMAL

OBSERVABILITY_PREFIXES = ("/health/", "/metrics")
API_KEY_SCOPE = "gateway.api_key"
SEND_IT_AS = "Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."


def api_key_of(scope: Scope) -> ApiKey | None:
    """The key the request was authenticated with (None without authentication)."""
    key: ApiKey | None = scope.get(API_KEY_SCOPE)
    return key


class ApiKeyMiddleware:
    """401 unless the request carries a key in force; health and metrics stay open unless protected."""

    def __init__(self, app: ASGIApp, keys: KeyRing, protect_observability: bool) -> None:
        self.app = app
        self.keys = keys
        self.protect_observability = protect_observability

    def _key(self, header: bytes | None, api_key: bytes | None) -> ApiKey | None:
        # A key is looked up as the UTF-8 bytes a client sends for it (header bytes are never decoded), so a
        # non-ASCII key matches too, although RFC 6750 tokens are ASCII and some clients cannot send others.
        if header is not None and header[:7].lower() == b"bearer ":
            return self.keys.find(header[7:].strip())
        if api_key is not None:
            return self.keys.find(api_key.strip())
        return None

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
        key = self._key(header, api_key)
        if key is None or key.expired(time.time()):
            if header is None and api_key is None:
                message = (
                    "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
                )
            elif key is None:
                message = (
                    "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
                )
            else:
                message = "This API key has expired."
            await send_error(scope, send, AuthenticationError(message), {"WWW-Authenticate": "Bearer"})
            return
        scope[API_KEY_SCOPE] = key
        set_owner(scope, key.owner)  # what it stores is its tenant's (or, for `--api-keys`, this key's)
        context = current_request()
        if context is not None:
            context.tenant = key.tenant
            if key.priority != NORMAL:  # normal is the engine's default: nothing to send
                context.priority = ENGINE_PRIORITY[key.priority]
        await self.app(scope, receive, send)
