"""The store as the HTTP layer sees it: its configuration from the settings, the app's open store, and who owns
what a request stores or reads.

A request's owner is set by the authentication middleware (`OWNER_SCOPE_KEY` in the ASGI scope's state): the
SHA-256 of its API key (never the key), or a tenant's name once tenants exist. Without API keys everything
belongs to one anonymous owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import Request
from starlette.types import Scope

from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.state import (
    ANONYMOUS_OWNER,
    Retention,
    Store,
    StoreConfig,
    StoreLimits,
    default_state_dir,
    open_store,
    purge_periodically,
)

logger = logging.getLogger(__name__)

OWNER_SCOPE_KEY = "gateway.owner"
PURGE_INTERVAL_S = 3600.0
DAY_S = 86400.0


class StoreUnavailableError(GatewayError):
    """The store is not open (the app is starting or stopping)."""

    status = 503
    type = "service_unavailable"
    code = "store_unavailable"


def store_config(settings: Settings) -> StoreConfig:
    """The store the settings describe."""
    days = (settings.response_retention_days, settings.conversation_retention_days)
    return StoreConfig(
        url=settings.store_url,
        state_dir=settings.state_dir or default_state_dir(),
        limits=StoreLimits(
            max_response_bytes=settings.max_stored_response_bytes,
            max_conversation_items=settings.max_conversation_items,
            max_conversation_bytes=settings.max_conversation_bytes,
        ),
        retention=Retention(*(None if d is None else d * DAY_S for d in days)),
    )


def set_owner(scope: Scope, owner: str) -> None:
    """Record who the request acts for (the authentication middleware)."""
    scope.setdefault("state", {})[OWNER_SCOPE_KEY] = owner


def owner_of(request: Request) -> str:
    """Who owns what this request stores or may read."""
    owner = request.scope.get("state", {}).get(OWNER_SCOPE_KEY)
    return owner if isinstance(owner, str) else ANONYMOUS_OWNER


def store_of(request: Request) -> Store:
    """The app's open store."""
    store = getattr(request.app.state, "store", None)
    if store is None:
        raise StoreUnavailableError("The store is not available right now; try again.")
    return store


class StoreService:
    """Opens the store at start-up, purges it periodically, closes it at shutdown."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.store: Store | None = None
        self._purge: asyncio.Task[None] | None = None

    async def start(self) -> Store:
        """Open (and migrate) the store; start the retention purge."""
        self.store = await open_store(self.config)
        self._purge = asyncio.create_task(purge_periodically(self.store, PURGE_INTERVAL_S), name="store-purge")
        return self.store

    async def stop(self) -> None:
        """Stop the purge and close the store."""
        if self._purge is not None:
            self._purge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge
        if self.store is not None:
            await self.store.close()
            self.store = None
