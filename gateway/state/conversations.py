"""Stored conversations and their items, in order, within the conversation size limits.

Items are appended under the conversation's row (its `next_position` counter is updated first, which holds the
row lock on PostgreSQL until the transaction ends), so concurrent appends to one conversation take turns and keep
their order; the same update checks the limits. Every read and change names the owner.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import PayloadTooLargeError
from gateway.state.database import Connection, Database, Row, Sql, execute_one, fetch_one
from gateway.state.records import ConversationRecord, ItemPage, ItemRecord, Order, StoreLimits

_COLUMNS = "id, owner, created_at, metadata, item_count, size"
_INSERT = Sql(
    "INSERT INTO conversations (id, owner, created_at, updated_at, expires_at, metadata) "
    "VALUES ($1, $2, $3, $3, $4, $5)"
)
_GET = Sql(f"SELECT {_COLUMNS} FROM conversations WHERE id = $1 AND owner = $2")
_SET_METADATA = Sql(
    f"UPDATE conversations SET metadata = $3, updated_at = $4 WHERE id = $1 AND owner = $2 RETURNING {_COLUMNS}"
)
_DELETE = Sql("DELETE FROM conversations WHERE id = $1 AND owner = $2")
# Reserves positions for `count` items of `size` bytes, if the limits allow; no row: absent or full.
_RESERVE = Sql(
    "UPDATE conversations SET next_position = next_position + $3, item_count = item_count + $3, "
    "size = size + $4, updated_at = $5, expires_at = $6 "
    "WHERE id = $1 AND owner = $2 AND item_count + $3 <= $7 AND size + $4 <= $8 "
    "RETURNING next_position - $3"
)
_INSERT_ITEM = Sql("INSERT INTO conversation_items (conversation_id, position, item_id, data) VALUES ($1, $2, $3, $4)")
_ITEM = Sql("SELECT item_id, data, position FROM conversation_items WHERE conversation_id = $1 AND item_id = $2")
_ALL_ITEMS = Sql("SELECT item_id, data, position FROM conversation_items WHERE conversation_id = $1 ORDER BY position")
_PAGE = {
    "asc": Sql(
        "SELECT item_id, data, position FROM conversation_items WHERE conversation_id = $1 AND position > $2 "
        "ORDER BY position LIMIT $3"
    ),
    "desc": Sql(
        "SELECT item_id, data, position FROM conversation_items WHERE conversation_id = $1 AND position < $2 "
        "ORDER BY position DESC LIMIT $3"
    ),
}
_DELETE_ITEM = Sql("DELETE FROM conversation_items WHERE conversation_id = $1 AND item_id = $2 RETURNING LENGTH(data)")
_FORGET_ITEM = Sql("UPDATE conversations SET item_count = item_count - 1, size = size - $2 WHERE id = $1")
_FIRST_POSITION, _PAST_LAST_POSITION = -1, 2**62


def _conversation(row: Row) -> ConversationRecord:
    id_, owner, created, metadata, count, size = row
    return ConversationRecord(
        str(id_),
        str(owner),
        float(created),
        bytes(metadata),
        int(count),
        int(size),
    )


def _item(row: Row) -> ItemRecord:
    return ItemRecord(str(row[0]), bytes(row[1]), int(row[2]))


class ConversationStore:
    """Conversations and their items."""

    def __init__(self, database: Database, limits: StoreLimits) -> None:
        self._database = database
        self.limits = limits

    async def create(
        self, record: ConversationRecord, items: Sequence[ItemRecord], expires_at: float | None, param: str
    ) -> None:
        """Store a new conversation with its first items (`param`: the items' field, for a refusal)."""
        async with self._database.transaction() as connection:
            await connection.execute(_INSERT, record.id, record.owner, record.created_at, expires_at, record.metadata)
            if items:
                await self._append(connection, record.id, record.owner, items, record.created_at, expires_at, param)

    async def get(self, conversation_id: str, owner: str) -> ConversationRecord | None:
        """The conversation, if it exists and is `owner`'s."""
        row = await fetch_one(self._database, _GET, conversation_id, owner)
        return _conversation(row) if row is not None else None

    async def set_metadata(
        self, conversation_id: str, owner: str, metadata: bytes, now: float
    ) -> ConversationRecord | None:
        """Replace the metadata; the conversation, or None when it is not `owner`'s."""
        row = await fetch_one(self._database, _SET_METADATA, conversation_id, owner, metadata, now)
        return _conversation(row) if row is not None else None

    async def delete(self, conversation_id: str, owner: str) -> bool:
        """Delete the conversation and its items; False when it is not `owner`'s."""
        return await execute_one(self._database, _DELETE, conversation_id, owner) > 0

    async def append(
        self,
        conversation_id: str,
        owner: str,
        items: Sequence[ItemRecord],
        now: float,
        expires_at: float | None,
        param: str,
        connection: Connection | None = None,
    ) -> list[ItemRecord] | None:
        """Add items at the end; the items with their positions, or None when the conversation is not `owner`'s.
        PayloadTooLargeError (413, naming `param`) when they would take it past its limits."""
        if connection is not None:
            return await self._append(connection, conversation_id, owner, items, now, expires_at, param)
        async with self._database.transaction() as own:
            return await self._append(own, conversation_id, owner, items, now, expires_at, param)

    async def _append(
        self,
        connection: Connection,
        conversation_id: str,
        owner: str,
        items: Sequence[ItemRecord],
        now: float,
        expires_at: float | None,
        param: str,
    ) -> list[ItemRecord] | None:
        size = sum(len(item.data) for item in items)
        limits = self.limits
        args = (conversation_id, owner, len(items), size, now, expires_at)
        row = await connection.fetchrow(_RESERVE, *args, limits.max_conversation_items, limits.max_conversation_bytes)
        if row is None:
            if await connection.fetchrow(_GET, conversation_id, owner) is None:
                return None
            raise PayloadTooLargeError(
                f"The conversation would hold more than {limits.max_conversation_items} items or "
                f"{limits.max_conversation_bytes} bytes with these {len(items)} items ({size} bytes).",
                param=param,
            )
        first = int(row[0])
        placed = [ItemRecord(item.id, item.data, first + index) for index, item in enumerate(items)]
        for item in placed:
            await connection.execute(_INSERT_ITEM, conversation_id, item.position, item.id, item.data)
        return placed

    async def item(self, conversation_id: str, owner: str, item_id: str) -> ItemRecord | None:
        """One item, if the conversation is `owner`'s and holds it."""
        async with self._database.transaction() as connection:
            if await connection.fetchrow(_GET, conversation_id, owner) is None:
                return None
            row = await connection.fetchrow(_ITEM, conversation_id, item_id)
        return _item(row) if row is not None else None

    async def items(self, conversation_id: str, owner: str) -> list[ItemRecord] | None:
        """Every item in order, or None when the conversation is not `owner`'s."""
        async with self._database.transaction() as connection:
            if await connection.fetchrow(_GET, conversation_id, owner) is None:
                return None
            return [_item(row) for row in await connection.fetch(_ALL_ITEMS, conversation_id)]

    async def page(
        self, conversation_id: str, owner: str, after: str | None, limit: int, order: Order
    ) -> ItemPage | None:
        """Up to `limit` items after the item `after` in `order`; None when the conversation is not `owner`'s
        or does not hold `after`."""
        async with self._database.transaction() as connection:
            if await connection.fetchrow(_GET, conversation_id, owner) is None:
                return None
            start = _FIRST_POSITION if order == "asc" else _PAST_LAST_POSITION
            if after is not None:
                found = await connection.fetchrow(_ITEM, conversation_id, after)
                if found is None:
                    return None
                start = int(found[2])
            rows = await connection.fetch(_PAGE[order], conversation_id, start, limit + 1)
        return ItemPage([_item(row) for row in rows[:limit]], len(rows) > limit)

    async def delete_item(self, conversation_id: str, owner: str, item_id: str) -> bool | None:
        """Delete one item: True, False when the conversation does not hold it, None when it is not `owner`'s."""
        async with self._database.transaction() as connection:
            if await connection.fetchrow(_GET, conversation_id, owner) is None:
                return None
            row = await connection.fetchrow(_DELETE_ITEM, conversation_id, item_id)
            if row is None:
                return False
            await connection.execute(_FORGET_ITEM, conversation_id, int(row[0]))
            return True
