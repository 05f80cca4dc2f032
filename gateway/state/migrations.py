"""The store's schema, versioned: each migration runs once, in order, at start-up, under the migration lock.

A new table or column is a new entry at the end of MIGRATIONS (never an edit of a released one); `{blob}` and
`{float}` are each dialect's type names. Replicas starting together take the lock one after the other, and the
second finds the version already current.
"""

from __future__ import annotations

import logging

from gateway.errors import ConfigurationError
from gateway.state.database import Connection, Database, Dialect, Sql

logger = logging.getLogger(__name__)

TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"blob": "BLOB", "float": "REAL"},
    "postgresql": {"blob": "BYTEA", "float": "DOUBLE PRECISION"},
}

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: responses and their threads, background events and leases, conversations and their items
    (
        """CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            created_at {float} NOT NULL,
            status TEXT NOT NULL,
            background INTEGER NOT NULL,
            previous_id TEXT,
            conversation_id TEXT,
            thread_id TEXT NOT NULL,
            input {blob} NOT NULL,
            body {blob} NOT NULL)""",
        "CREATE INDEX responses_thread ON responses (thread_id)",
        # A thread (a previous_response_id chain, or a conversation's responses) expires as one: every turn
        # renews one row here instead of every response of the conversation.
        """CREATE TABLE threads (
            id TEXT PRIMARY KEY,
            expires_at {float})""",
        "CREATE INDEX threads_expiry ON threads (expires_at)",
        """CREATE TABLE response_events (
            response_id TEXT NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
            sequence BIGINT NOT NULL,
            name TEXT NOT NULL,
            data {blob} NOT NULL,
            PRIMARY KEY (response_id, sequence))""",
        """CREATE TABLE background_runs (
            response_id TEXT PRIMARY KEY REFERENCES responses (id) ON DELETE CASCADE,
            replica TEXT NOT NULL,
            lease_expires_at {float} NOT NULL,
            cancel_requested INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX background_runs_lease ON background_runs (lease_expires_at)",
        "CREATE INDEX background_runs_replica ON background_runs (replica)",
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            created_at {float} NOT NULL,
            updated_at {float} NOT NULL,
            expires_at {float},
            metadata {blob} NOT NULL,
            next_position BIGINT NOT NULL DEFAULT 0,
            item_count BIGINT NOT NULL DEFAULT 0,
            size BIGINT NOT NULL DEFAULT 0)""",
        "CREATE INDEX conversations_expiry ON conversations (expires_at)",
        """CREATE TABLE conversation_items (
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            position BIGINT NOT NULL,
            item_id TEXT NOT NULL,
            data {blob} NOT NULL,
            PRIMARY KEY (conversation_id, position))""",
        "CREATE UNIQUE INDEX conversation_items_id ON conversation_items (conversation_id, item_id)",
    ),
    # 2: usage per UTC day, tenant, key and model (the keys file's tenants; api/usage_ledger.py)
    (
        """CREATE TABLE tenant_usage (
            day BIGINT NOT NULL,
            tenant TEXT NOT NULL,
            key_id TEXT NOT NULL,
            model TEXT NOT NULL,
            requests BIGINT NOT NULL,
            prompt_tokens BIGINT NOT NULL,
            cached_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            PRIMARY KEY (day, tenant, key_id, model))""",
    ),
)
LATEST_VERSION = len(MIGRATIONS)

_CREATE_VERSION_TABLE = Sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
_READ_VERSION = Sql("SELECT MAX(version) FROM schema_version")
_WRITE_VERSION = Sql("INSERT INTO schema_version (version) VALUES ($1)")


async def schema_version(connection: Connection) -> int:
    """The version the database is at (0 for a new one)."""
    await connection.execute(_CREATE_VERSION_TABLE)
    row = await connection.fetchrow(_READ_VERSION)
    return int(row[0]) if row is not None and row[0] is not None else 0


async def migrate(database: Database) -> int:
    """Bring the schema to the latest version; the version it was at before."""
    async with database.migration_lock() as connection:
        found = await schema_version(connection)
        if found > LATEST_VERSION:
            raise ConfigurationError(
                f"The store's schema is at version {found}, newer than this gateway knows ({LATEST_VERSION}): "
                "upgrade the gateway, or point it at another store."
            )
        for version in range(found + 1, LATEST_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                await connection.execute(Sql(statement.format(**TYPES[database.dialect])))
            await connection.execute(_WRITE_VERSION, version)
        if found < LATEST_VERSION:
            logger.info("store schema migrated from version %d to %d", found, LATEST_VERSION)
        return found
