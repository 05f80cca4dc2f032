"""Where responses go: Triton response senders, fed by a few sender threads.

`send()` on a decoupled response sender is a blocking IPC round trip to the Triton process (about 0.2 ms
here). Making it on the scheduler thread would cap the engine at a few thousand responses per second, so the
scheduler only queues responses and a small pool of threads sends them. Each request is pinned to one sender
thread, which keeps its responses in order.

Client cancellation is polled like the real backend does (every request, every `cancellation_check_period_ms`):
`is_cancelled()` is another IPC call, so a sender thread asks right after sending, and a watcher thread asks
for the requests that sent nothing lately (queued, non-streaming, or between slow tokens). A cancel found
there is handed to the engine (`on_cancel`), which ends the request in its next pass. Both threads go
through one lock per request: once the FINAL response is sent, Triton frees the request's response factory,
and an `is_cancelled()` racing with that send crashes the server (seen with 200 concurrent streams).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
# The real backend polls for client cancellation every `cancellation_check_period_ms` (default 100).
CANCEL_CHECK_PERIOD_S = 0.1
OUTBOX_SIZE = 32


class SenderPool:
    """Threads that deliver queued responses (one queue per thread), and the cancellation watcher."""

    def __init__(self, size: int) -> None:
        # Bounded, so a scheduler that outruns the senders waits instead of piling up latency in the queues.
        self._queues: list[queue.Queue[Any]] = [queue.Queue(OUTBOX_SIZE) for _ in range(size)]
        self._threads = [
            threading.Thread(target=self._deliver, args=(outbox,), name=f"dev-sender-{index}", daemon=True)
            for index, outbox in enumerate(self._queues)
        ]
        self._next = itertools.count()
        self._live: set[DecoupledReply] = set()
        self._live_lock = threading.Lock()
        self._closed = threading.Event()
        self._threads.append(threading.Thread(target=self._watch, name="dev-cancel-watch", daemon=True))
        for thread in self._threads:
            thread.start()

    def outbox(self) -> queue.Queue[Any]:
        """The queue for a new request (round robin)."""
        return self._queues[next(self._next) % len(self._queues)]

    def watch(self, reply: DecoupledReply) -> None:
        """Poll this reply for cancellation until its final response is sent."""
        with self._live_lock:
            self._live.add(reply)

    def forget(self, reply: DecoupledReply) -> None:
        """Stop polling this reply."""
        with self._live_lock:
            self._live.discard(reply)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, then stop the threads."""
        self._closed.set()
        for outbox in self._queues:
            outbox.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _watch(self) -> None:
        while not self._closed.wait(CANCEL_CHECK_PERIOD_S / 2):
            with self._live_lock:
                replies = list(self._live)
            for reply in replies:
                reply.poll_cancelled()

    @staticmethod
    def _deliver(outbox: queue.Queue[Any]) -> None:
        while (item := outbox.get()) is not None:
            reply, response, flags = item
            reply.deliver(response, flags)


class DecoupledReply:
    """A response sender shared by the items of one request; only the very last response is FINAL."""

    def __init__(self, sender: Any, pool: SenderPool) -> None:
        self._sender = sender
        self._pool = pool
        self._outbox = pool.outbox()
        self._pending = 1
        self._lock = threading.Lock()
        # Serialises the IPC calls on this sender: no `is_cancelled()` during or after the FINAL send.
        self._ipc_lock = threading.Lock()
        self._checked_at = time.monotonic()
        self._cancelled = False
        self._on_cancel: Callable[[], None] | None = None
        self._finished = False

    def expect(self, items: int) -> None:
        """Set how many batch items share this sender, before any of them is queued; start polling it."""
        self._pending = items
        self._pool.watch(self)

    def send(self, response: Any, item_done: bool) -> None:
        """Queue one response; it is FINAL once every item of the request is done."""
        flags = 0
        if item_done:
            with self._lock:
                self._pending -= 1
                flags = FINAL if self._pending == 0 else 0
        self._outbox.put((self, response, flags))

    def deliver(self, response: Any, flags: int) -> None:
        """Send on the sender thread, then check for a client cancel if one is due."""
        if flags:
            self._pool.forget(self)
        with self._ipc_lock:
            if flags:
                self._finished = True
            try:
                self._sender.send(response, flags=flags)
            except Exception as exc:  # the client went away; like the real engine, drop what it no longer reads
                pb_utils.Logger.log_verbose(f"dev engine: response not delivered: {exc}")
        self.poll_cancelled()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call `callback` once when a poll finds the request cancelled (at once if one did already)."""
        with self._lock:
            self._on_cancel = callback
            cancelled = self._cancelled
        if cancelled:
            callback()

    def poll_cancelled(self) -> None:
        """Ask Triton whether the client cancelled, unless that was asked within the last period."""
        with self._ipc_lock:
            now = time.monotonic()
            if self._finished or self._cancelled or now - self._checked_at < CANCEL_CHECK_PERIOD_S:
                return
            self._checked_at = now
            try:
                cancelled = bool(self._sender.is_cancelled())
            except Exception as exc:  # the request completed meanwhile
                pb_utils.Logger.log_verbose(f"dev engine: cancellation check failed: {exc}")
                return
        if cancelled:
            # Outside the IPC lock: the engine takes its own lock to end the request.
            with self._lock:
                self._cancelled = True
                callback = self._on_cancel
            if callback is not None:
                callback()


class CollectedReply:
    """Non-decoupled mode: holds the one response that execute() returns."""

    def __init__(self) -> None:
        self.response: Any = None
        self.ready = threading.Event()

    def expect(self, items: int) -> None:
        """Non-decoupled requests have a single item."""

    def send(self, response: Any, item_done: bool) -> None:
        """Keep the final response and wake execute()."""
        if item_done:
            self.response = response
            self.ready.set()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Non-decoupled requests are not cancelled by the dev engine."""
