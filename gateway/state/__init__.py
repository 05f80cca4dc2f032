"""The store of stateful APIs: responses, conversations, background runs, and the tenants' usage (SQLite embedded,
PostgreSQL for replicas).

Only the HTTP layer (`gateway/api/`) uses it; it imports nothing of the gateway but the errors.
"""

from gateway.state.records import (
    ANONYMOUS_OWNER,
    TERMINAL_STATUSES,
    ConversationRecord,
    EventRecord,
    ItemPage,
    ItemRecord,
    ResponseRecord,
    Retention,
    StoreLimits,
)
from gateway.state.store import Store, StoreConfig, default_state_dir, open_store, purge_periodically
from gateway.state.usage import UsageRecord

__all__ = [
    "ANONYMOUS_OWNER",
    "TERMINAL_STATUSES",
    "ConversationRecord",
    "EventRecord",
    "ItemPage",
    "ItemRecord",
    "ResponseRecord",
    "Retention",
    "Store",
    "StoreConfig",
    "StoreLimits",
    "UsageRecord",
    "default_state_dir",
    "open_store",
    "purge_periodically",
]
