"""The store as the tenants' usage ledger: the recorder's batches added to the store's usage rows, read back for the
usage API. On PostgreSQL every replica adds to the same rows, so any replica answers for all of them."""

from __future__ import annotations

from starlette.datastructures import State

from gateway.api.store_access import StoreUnavailableError
from gateway.state import Store, UsageRecord
from gateway.tenants.usage import UsageCounts, UsageKey, UsageRows


class StoreLedger:
    """A UsageLedger over the app's store (app.state.store: opened by the lifespan, None before and after)."""

    def __init__(self, app_state: State) -> None:
        self._app_state = app_state

    def _store(self) -> Store:
        store: Store | None = getattr(self._app_state, "store", None)
        if store is None:
            raise StoreUnavailableError("The store is not available right now; try again.")
        return store

    async def add(self, rows: UsageRows) -> None:
        """Add the counts to the store's rows (one transaction)."""
        records = [
            UsageRecord(
                key.day,
                key.tenant,
                key.key_id,
                key.model,
                counts.requests,
                counts.prompt_tokens,
                counts.cached_tokens,
                counts.completion_tokens,
            )
            for key, counts in rows.items()
        ]
        await self._store().usage.add(records)

    async def read(self, start_day: int, end_day: int) -> list[tuple[UsageKey, UsageCounts]]:
        """The rows of those days."""
        return [
            (
                UsageKey(r.day, r.tenant, r.key_id, r.model),
                UsageCounts(r.requests, r.prompt_tokens, r.cached_tokens, r.completion_tokens),
            )
            for r in await self._store().usage.read(start_day, end_day)
        ]
