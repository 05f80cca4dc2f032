"""Stored responses: the response object, this turn's input items, the chain of previous responses, and the
streamed events of background responses.

Every read names the owner: another owner's response is as absent as one that never existed. A response's
thread (its conversation, or the first response of its previous_response_id chain) has one expiry (its row in
`threads`), renewed by every new turn, so a conversation in use never loses its beginning to the retention purge.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import PayloadTooLargeError
from gateway.state.database import Connection, Database, Row, Sql, Value, execute_one, fetch_all, fetch_one
from gateway.state.records import RUNNING_STATUSES, EventRecord, ResponseRecord, StoreLimits

_STORED = "id, owner, created_at, status, body, input, previous_id, conversation_id, thread_id, background"
_COLUMNS = ", ".join(f"r.{column.strip()}" for column in _STORED.split(",")) + ", t.expires_at"
_FROM = "responses r LEFT JOIN threads t ON t.id = r.thread_id"
_INSERT = Sql(
    f"INSERT INTO responses ({_STORED}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
    "ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body, input = excluded.input"
)
_RENEW_THREAD = Sql(
    "INSERT INTO threads (id, expires_at) VALUES ($1, $2) "
    "ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at"
)
_GET = Sql(f"SELECT {_COLUMNS} FROM {_FROM} WHERE r.id = $1 AND r.owner = $2")
_LOAD = Sql(f"SELECT {_COLUMNS} FROM {_FROM} WHERE r.id = $1")
_UPDATE_RUNNING = Sql(
    f"UPDATE responses SET status = $2, body = $3 WHERE id = $1 AND status IN {tuple(RUNNING_STATUSES)!r}"
)
# The chain of previous responses, newest first: one round trip, however long the chain.
_CHAIN = Sql(
    f"""WITH RECURSIVE chain (id, previous_id, depth) AS (
        SELECT id, previous_id, 0 FROM responses WHERE id = $1 AND owner = $2
        UNION ALL
        SELECT r.id, r.previous_id, chain.depth + 1 FROM responses r JOIN chain ON r.id = chain.previous_id
        WHERE r.owner = $2 AND chain.depth < $3)
    SELECT {_COLUMNS}
    FROM chain JOIN responses r ON r.id = chain.id LEFT JOIN threads t ON t.id = r.thread_id ORDER BY chain.depth"""
)
_DELETE = Sql("DELETE FROM responses WHERE id = $1 AND owner = $2")
_INSERT_EVENT = Sql(
    "INSERT INTO response_events (response_id, sequence, name, data) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (response_id, sequence) DO NOTHING"
)
_EVENTS_AFTER = Sql(
    "SELECT sequence, name, data FROM response_events WHERE response_id = $1 AND sequence > $2 "
    "ORDER BY sequence LIMIT $3"
)
_LAST_EVENT = Sql("SELECT MAX(sequence) FROM response_events WHERE response_id = $1")
MAX_CHAIN_DEPTH = 10_000


def _record(row: Row) -> ResponseRecord:
    (id_, owner, created, status, body, input_, previous, conversation, thread, background, expires) = row
    return ResponseRecord(
        id=str(id_),
        owner=str(owner),
        created_at=float(created),
        status=str(status),
        body=bytes(body),
        input=bytes(input_),
        previous_id=None if previous is None else str(previous),
        conversation_id=None if conversation is None else str(conversation),
        thread_id=str(thread),
        background=bool(background),
        expires_at=None if expires is None else float(expires),
    )


def _values(record: ResponseRecord) -> tuple[Value, ...]:
    return (
        record.id,
        record.owner,
        record.created_at,
        record.status,
        record.body,
        record.input,
        record.previous_id,
        record.conversation_id,
        record.thread_id or record.id,
        int(record.background),
    )


class ResponseStore:
    """Responses and their events."""

    def __init__(self, database: Database, limits: StoreLimits) -> None:
        self._database = database
        self.limits = limits

    def check_size(self, record: ResponseRecord, param: str | None = None) -> None:
        """PayloadTooLargeError (413) when the response is too large to store."""
        if record.size > self.limits.max_response_bytes:
            raise PayloadTooLargeError(
                f"The response and its input take {record.size} bytes; at most {self.limits.max_response_bytes} "
                "can be stored. Send it with `store: false`, or shorten it.",
                param=param,
            )

    async def put(self, record: ResponseRecord, connection: Connection | None = None) -> None:
        """Store a response (or replace the one with its id), renewing its thread's expiry."""
        if connection is None:
            async with self._database.transaction() as own:
                await self._put(own, record)
        else:
            await self._put(connection, record)

    async def _put(self, connection: Connection, record: ResponseRecord) -> None:
        await connection.execute(_INSERT, *_values(record))
        await connection.execute(_RENEW_THREAD, record.thread_id or record.id, record.expires_at)

    async def get(self, response_id: str, owner: str) -> ResponseRecord | None:
        """The response, if it exists and belongs to `owner`."""
        row = await fetch_one(self._database, _GET, response_id, owner)
        return _record(row) if row is not None else None

    async def load(self, response_id: str) -> ResponseRecord | None:
        """The response whoever owns it (the gateway's own bookkeeping: runs, takeovers; never a client's read)."""
        row = await fetch_one(self._database, _LOAD, response_id)
        return _record(row) if row is not None else None

    async def update_running(
        self, response_id: str, status: str, body: bytes, connection: Connection | None = None
    ) -> bool:
        """Replace a queued or in-progress response's status and object; False when it had already ended (a
        cancel, or a replica that took it for dead, came first) or is gone."""
        if connection is None:
            return await execute_one(self._database, _UPDATE_RUNNING, response_id, status, body) > 0
        return await connection.execute(_UPDATE_RUNNING, response_id, status, body) > 0

    async def chain(self, response_id: str, owner: str) -> list[ResponseRecord]:
        """The response and every previous one it builds on, oldest first; empty when it is not `owner`'s.
        A deleted (or expired) response ends the chain: what came before it is no longer part of the context."""
        rows = await fetch_all(self._database, _CHAIN, response_id, owner, MAX_CHAIN_DEPTH)
        records = [_record(row) for row in rows]
        records.reverse()
        total = sum(record.size for record in records)
        if total > self.limits.max_history_bytes:
            raise PayloadTooLargeError(
                f"The conversation of previous_response_id takes {total} bytes, more than the "
                f"{self.limits.max_history_bytes} a turn may bring in. Start a new conversation.",
                param="previous_response_id",
            )
        return records

    async def delete(self, response_id: str, owner: str) -> bool:
        """Delete the response (its events and background run too); False when it is not `owner`'s."""
        return await execute_one(self._database, _DELETE, response_id, owner) > 0

    async def add_events(self, response_id: str, events: Sequence[EventRecord]) -> None:
        """Keep a batch of a background response's streamed events (again: nothing changes)."""
        if not events:
            return
        async with self._database.transaction() as connection:
            await self.add_event_rows(connection, response_id, events)

    @staticmethod
    async def add_event_rows(connection: Connection, response_id: str, events: Sequence[EventRecord]) -> None:
        """Keep events inside the caller's transaction (one statement for the batch)."""
        rows = [(response_id, event.sequence, event.name, event.data) for event in events]
        if rows:
            await connection.execute_many(_INSERT_EVENT, rows)

    async def events_after(self, response_id: str, sequence: int, limit: int = 1000) -> list[EventRecord]:
        """The stored events after `sequence`, in order (the owner was checked by the caller)."""
        rows = await fetch_all(self._database, _EVENTS_AFTER, response_id, sequence, limit)
        return [EventRecord(int(s), str(n), bytes(d)) for s, n, d in rows]

    async def last_event(self, response_id: str) -> int | None:
        """The sequence number of the last stored event, if any."""
        row = await fetch_one(self._database, _LAST_EVENT, response_id)
        return None if row is None or row[0] is None else int(row[0])
