"""Background runs: which replica runs which background response, until when its lease holds, and cancels.

A replica renews the leases of all its runs in one statement and reads the cancels asked of them in one query,
however many it runs. A run whose lease ran out (its replica died) is taken over by whichever replica deletes its
row first; that one marks the response failed.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.state.database import Database, Sql, execute_one, fetch_all
from gateway.state.records import EventRecord, ResponseRecord
from gateway.state.responses import ResponseStore

_START = Sql("INSERT INTO background_runs (response_id, replica, lease_expires_at) VALUES ($1, $2, $3)")
_RENEW = Sql("UPDATE background_runs SET lease_expires_at = $2 WHERE replica = $1")
_CANCELS = Sql("SELECT response_id FROM background_runs WHERE replica = $1 AND cancel_requested = 1")
_MINE = Sql("SELECT response_id FROM background_runs WHERE replica = $1")
_ASK_CANCEL = Sql("UPDATE background_runs SET cancel_requested = 1 WHERE response_id = $1")
_END = Sql("DELETE FROM background_runs WHERE response_id = $1")
_EXPIRED = Sql(
    "SELECT response_id FROM background_runs WHERE lease_expires_at < $1 ORDER BY lease_expires_at LIMIT 100"
)
_TAKE_OVER = Sql("DELETE FROM background_runs WHERE response_id = $1 AND lease_expires_at < $2")


class BackgroundRuns:
    """The leases of background responses."""

    def __init__(self, database: Database, responses: ResponseStore) -> None:
        self._database = database
        self._responses = responses

    async def start(self, record: ResponseRecord, replica: str, lease_until: float) -> None:
        """Store a new background response and its run by `replica`, together."""
        async with self._database.transaction() as connection:
            await self._responses.put(record, connection)
            await connection.execute(_START, record.id, replica, lease_until)

    async def renew(self, replica: str, lease_until: float) -> None:
        """Extend the lease of every run of `replica`."""
        await execute_one(self._database, _RENEW, replica, lease_until)

    async def cancels(self, replica: str) -> set[str]:
        """The runs of `replica` that a client asked to cancel."""
        return {str(row[0]) for row in await fetch_all(self._database, _CANCELS, replica)}

    async def running(self, replica: str) -> set[str]:
        """The runs `replica` holds (a run missing here was taken over, or its response deleted)."""
        return {str(row[0]) for row in await fetch_all(self._database, _MINE, replica)}

    async def ask_cancel(self, response_id: str) -> bool:
        """Ask the replica running it to stop; False when it runs nowhere (it ended, or was never a run)."""
        return await execute_one(self._database, _ASK_CANCEL, response_id) > 0

    async def finish(self, response_id: str, status: str, body: bytes, events: Sequence[EventRecord]) -> bool:
        """End a run: its last events, its final object (unless it had ended already), the lease released;
        whether the object was written."""
        async with self._database.transaction() as connection:
            await self._responses.add_event_rows(connection, response_id, events)
            written = await self._responses.update_running(response_id, status, body, connection)
            await connection.execute(_END, response_id)
        return written

    async def expired(self, now: float) -> list[str]:
        """Runs whose lease ran out (their replica stopped renewing it), oldest first."""
        return [str(row[0]) for row in await fetch_all(self._database, _EXPIRED, now)]

    async def take_over(self, response_id: str, now: float) -> bool:
        """Claim an expired run for failing it: True for exactly one replica, however many try."""
        return await execute_one(self._database, _TAKE_OVER, response_id, now) > 0
