"""Background responses: generations that run without a client, on the replica that accepted them, visible to
every replica through the store.

A run holds a lease in the store that its replica renews (every quarter lease, one statement for all its runs);
its streamed events go to the store in batches (every `FLUSH_S`, off the generation's path: the run only appends
to a list), so any replica can replay them. Every `POLL_S` the replica reads the cancels asked of its runs (one
query) and stops those generations, which stops them upstream. A run whose replica died stops being renewed;
once its lease has run out another replica takes it over and marks the response failed, so none stays
`in_progress` forever. At shutdown the running ones get the drain time to finish, then are ended (failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.core.generation import Generation, stream_chunks
from gateway.errors import GatewayError, ShuttingDownError
from gateway.protocols.responses.encode import ResponsesEncoder
from gateway.protocols.responses.stored import cancelled, lifecycle_event, lost
from gateway.state import EventRecord, Store

logger = logging.getLogger(__name__)

FLUSH_S = 0.1
POLL_S = 0.5
TERMINAL_EVENTS = frozenset({b"response.completed", b"response.incomplete", b"response.failed"})
LOST_MESSAGE = "The gateway replica running this background response stopped before it ended."
OnEnd = Callable[[dict[str, Any]], Awaitable[None]]  # what to do with a completed response (its conversation)


class BackgroundCancelled(GatewayError):
    """A client cancelled the background response."""

    status = 499
    type = "cancelled"


class Run:
    """One background response running here: its generation, the events not yet stored, who waits for news."""

    def __init__(
        self, response_id: str, generation: Generation, on_end: OnEnd | None, on_stopped: Callable[[], None] | None
    ) -> None:
        self.id = response_id
        self.generation = generation
        self.on_end = on_end
        self.on_stopped = on_stopped  # once the generation stopped, however (its key's limits settled)
        self.pending: list[EventRecord] = []
        self.sequence = 0
        self.changed = asyncio.Event()  # set when events were stored (live readers on this replica wake up)
        self.task: asyncio.Task[None] | None = None
        self.cancel_asked = False

    def add(self, events: list[tuple[bytes, bytes]]) -> None:
        """Keep a batch of streamed events for the next flush (no I/O here: this is the generation's path)."""
        for name, data in events:
            self.pending.append(EventRecord(self.sequence, name.decode(), data))
            self.sequence += 1

    def take(self) -> list[EventRecord]:
        """The events not stored yet."""
        taken, self.pending = self.pending, []
        return taken


class BackgroundRunner:
    """This replica's background runs, their leases, cancels and the takeover of dead replicas' runs."""

    def __init__(self, store: Store, lease_s: float) -> None:
        self.store = store
        self.lease_s = lease_s
        self.replica = uuid.uuid4().hex  # a process, not a host: every worker and restart is a new replica
        self.runs: dict[str, Run] = {}
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the housekeeping loop (leases, cancels, takeovers)."""
        self._loop = asyncio.create_task(self._housekeeping(), name="background-runs")

    async def submit(self, response: dict[str, Any], record_put: Awaitable[None], generation: Generation,
                     on_end: OnEnd | None = None, on_stopped: Callable[[], None] | None = None) -> Run:  # fmt: skip
        """Store the queued response (`record_put` writes it with its lease) and start its run; `on_stopped` is
        called when its generation has stopped, however it ended."""
        await record_put
        run = Run(response["id"], generation, on_end, on_stopped)
        self.runs[run.id] = run
        run.task = asyncio.create_task(self._run(run, response), name=f"background-{run.id}")
        return run

    def lease_until(self) -> float:
        """When a lease taken or renewed now runs out."""
        return time.time() + self.lease_s

    async def _run(self, run: Run, queued: dict[str, Any]) -> None:
        flusher = asyncio.create_task(self._flush_periodically(run))
        status, final, closing = "failed", queued, []
        encoder = run.generation.encoder
        assert isinstance(encoder, ResponsesEncoder)
        try:
            await self.store.responses.update_running(run.id, "in_progress", orjson.dumps(encoder.snapshot()))
            async for batch in stream_chunks(run.generation):
                run.add(batch)
            closing = [event for event in run.pending if event.name.encode() in TERMINAL_EVENTS]
            final = orjson.loads(closing[-1].data)["response"] if closing else encoder.snapshot()
            status = final["status"]
        except asyncio.CancelledError:
            if run.cancel_asked:
                status, final = self._ended_early(run, encoder, BackgroundCancelled("cancelled"), cancel=True)
            else:  # the shutdown's end of what the drain did not finish
                ended = ShuttingDownError("The server shut down before this background response ended.")
                status, final = self._ended_early(run, encoder, ended, cancel=False)
        except GatewayError as exc:
            status, final = self._ended_early(run, encoder, exc, cancel=False)
        except Exception:
            logger.exception("background response %s failed", run.id)
            status, final = self._ended_early(run, encoder, GatewayError("The server had an error."), cancel=False)
        finally:
            if run.on_stopped is not None:
                run.on_stopped()
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await self._finish(run, status, final)

    def _ended_early(
        self, run: Run, encoder: ResponsesEncoder, error: GatewayError, cancel: bool
    ) -> tuple[str, dict[str, Any]]:
        """The events and object of a run ended by a failure (the encoder's: the open item closed, `error`,
        `response.failed`) or a cancel (the open item closed, then `response.failed` carrying the cancelled
        response: the API has no cancel event)."""
        events = encoder.failure(error, b"")
        response = orjson.loads(events[-1][1])["response"]
        if cancel:
            events = [event for event in events if event[0] not in (b"error", b"response.failed")]
            response = cancelled(response) | {"error": None}
        run.add(events)
        if cancel:
            run.sequence = encoder.sequence  # the dropped events' numbers stay unused: still strictly increasing
            name, data = lifecycle_event("response.failed", response, run.sequence)
            run.add([(name.encode(), data)])
        return response["status"], response

    async def _finish(self, run: Run, status: str, final: dict[str, Any]) -> None:
        try:
            written = await self.store.runs.finish(run.id, status, orjson.dumps(final), run.take())
            if written and status == "completed" and run.on_end is not None:
                await run.on_end(final)
        except Exception:
            logger.exception("background response %s: its end could not be stored", run.id)
        finally:
            run.changed.set()
            self.runs.pop(run.id, None)

    async def _flush_periodically(self, run: Run) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            events = run.take()
            if events:
                try:
                    await self.store.responses.add_events(run.id, events)
                except Exception:
                    run.pending[:0] = events  # kept for the next flush
                    logger.exception("background response %s: events not stored yet", run.id)
                    continue
                run.changed.set()
                run.changed = asyncio.Event()

    def cancel_here(self, response_id: str) -> bool:
        """Stop a run of this replica now; False when it does not run here."""
        run = self.runs.get(response_id)
        if run is None or run.task is None:
            return False
        run.cancel_asked = True
        run.task.cancel()
        return True

    async def _housekeeping(self) -> None:
        renewed = taken_over = 0.0
        while True:
            await asyncio.sleep(POLL_S)
            now = time.monotonic()
            try:
                if self.runs:
                    held = await self.store.runs.running(self.replica)
                    asked = await self.store.runs.cancels(self.replica)
                    for response_id in [r for r in self.runs if r in asked or r not in held]:
                        self.cancel_here(response_id)  # cancelled, deleted, or taken over as lost
                    if now - renewed >= self.lease_s / 4:
                        await self.store.runs.renew(self.replica, self.lease_until())
                        renewed = now
                if now - taken_over >= self.lease_s / 2:
                    await self.take_over_expired()
                    taken_over = now
            except Exception:
                logger.exception("background runs: housekeeping failed; trying again")

    async def take_over_expired(self) -> int:
        """Mark failed the runs whose replica stopped renewing their lease; how many."""
        failed = 0
        now = time.time()
        for response_id in await self.store.runs.expired(now):
            if not await self.store.runs.take_over(response_id, now):
                continue  # another replica took it
            record = await self.store.responses.load(response_id)
            if record is None:
                continue
            response = lost(orjson.loads(record.body), LOST_MESSAGE)
            sequence = (await self.store.responses.last_event(response_id) or -1) + 1
            name, data = lifecycle_event("response.failed", response, sequence)
            if await self.store.responses.update_running(response_id, "failed", orjson.dumps(response)):
                await self.store.responses.add_events(response_id, [EventRecord(sequence, name, data)])
                failed += 1
                logger.warning("background response %s: its replica stopped; marked failed", response_id)
        return failed

    async def drain(self, timeout_s: float) -> None:
        """Give the running ones `timeout_s` to finish, then end them (failed, as at any shutdown)."""
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        if tasks:
            logger.info("draining %d background responses for up to %.0f s", len(tasks), timeout_s)
            _, running = await asyncio.wait(tasks, timeout=timeout_s)
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
