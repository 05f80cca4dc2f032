"""Guide checks off the event loop, with a time limit, and their verdicts cached by text.

Meta-schema validation (pure Python, holds the GIL) and xgrammar's compile run in worker processes
(openai/guide_worker.py), one per thread of a small pool. xgrammar releases the GIL, so a thread would keep the
loop responsive, but a thread cannot be stopped: a conversion that runs for minutes would hold a core (and
delay shutdown) for minutes. A process is killed at the time limit and replaced. Workers fork from a
forkserver that imported xgrammar once, so a replacement starts in milliseconds and shares its memory.

Agents send the same tools and response formats with every request, so verdicts (a problem or None) are kept
by a digest of the text: a repeated schema costs a hash and a dictionary lookup, and the cache's memory does not
depend on what clients send. Timeouts are not verdicts (see `_run_one`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import multiprocessing
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from typing import Any

from gateway.errors import InvalidRequestError
from gateway.openai import guide_worker
from gateway.openai.guide_worker import CheckKind
from gateway.openai.schema_bounds import GuideLimits

logger = logging.getLogger(__name__)

CACHED_VERDICTS = 4096  # about 0.5 MB: a 16-byte digest and a short message or None each
CACHED_GRAMMARS = 256  # compact-JSON grammars, each at most CACHED_GRAMMAR_CHARS: at most 16 MiB
CACHED_GRAMMAR_CHARS = 64 * 1024
STARTUP_TIMEOUT_S = 60.0  # the first worker waits for the forkserver to import xgrammar (and torch)
UNCHECKED: Any = object()  # `cached()` when the text has no verdict yet


@dataclass(frozen=True, slots=True)
class GuideCheck:
    """The expensive part of checking one guide text; `param` names the request field it came from."""

    kind: CheckKind
    source: str
    param: str


class _CheckTimedOut(Exception):
    pass


class _WorkerFailed(Exception):
    pass


class _Worker:
    """One worker process and its pipe, driven by one thread of the pool."""

    def __init__(self, context: ForkServerContext) -> None:
        self._context = context
        self._process: Any = None
        self._connection: Connection | None = None

    def check(self, kind: CheckKind, source: str, deadline: float) -> str | None:
        """The guide's problem or None; _CheckTimedOut past `deadline` (the process is killed), _WorkerFailed
        when the process ends twice on it (once may be a death that came before the check)."""
        try:
            return self._exchange(kind, source, deadline)
        except _WorkerFailed:
            return self._exchange(kind, source, deadline)

    def _exchange(self, kind: CheckKind, source: str, deadline: float) -> str | None:
        connection = self.start()
        try:
            connection.send((kind, source))
            if not connection.poll(max(deadline - time.monotonic(), 0.0)):
                self.stop()
                raise _CheckTimedOut
            return connection.recv()
        except (EOFError, OSError):
            exitcode = self._process.exitcode if self._process is not None else None
            self.stop()
            raise _WorkerFailed(f"the worker ended (exit code {exitcode})") from None

    def start(self) -> Connection:
        """The pipe to a running worker process, started (and waited for) if there is none."""
        if self._connection is not None and self._process is not None and self._process.is_alive():
            return self._connection
        self.stop()
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=guide_worker.serve, args=(child,), name="trtllm-gateway-guide-check", daemon=True
        )
        process.start()
        child.close()
        self._process, self._connection = process, parent
        if not parent.poll(STARTUP_TIMEOUT_S) or parent.recv() != "ready":
            self.stop()
            raise _WorkerFailed("the worker did not start")
        return parent

    def stop(self) -> None:
        """Kill the process (if any) and close the pipe."""
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if connection is not None:
            connection.close()
        if process is not None:
            process.kill()
            process.join()
            process.close()


class GuideChecker:
    """The checks a request's guides and tools need beyond their bounds, run in `workers` worker processes."""

    def __init__(self, limits: GuideLimits | None = None, workers: int = 1) -> None:
        self.limits = limits or GuideLimits()
        self._workers = workers
        self._verdicts: OrderedDict[bytes, str | None] = OrderedDict()
        self._grammars: OrderedDict[bytes, str | None] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._started: list[_Worker] = []
        self._lock = threading.Lock()

    def cached(self, kind: CheckKind, source: str) -> str | None:
        """The verdict already known for this text: a problem, None (fine), or UNCHECKED."""
        key = _verdict_key(kind, source)
        verdict = self._verdicts.get(key, UNCHECKED)
        if verdict is not UNCHECKED:
            self._verdicts.move_to_end(key)
        return verdict

    def remember(self, kind: CheckKind, source: str, problem: str | None) -> None:
        """Keep a verdict (the least recently used one goes when the cache is full)."""
        key = _verdict_key(kind, source)
        self._verdicts[key] = problem
        self._verdicts.move_to_end(key)
        if len(self._verdicts) > CACHED_VERDICTS:
            self._verdicts.popitem(last=False)

    async def run(self, checks: Sequence[GuideCheck]) -> None:
        """400 naming the field of the first check that fails; all of them within the time limit together."""
        deadline = time.monotonic() + self.limits.check_timeout_s
        for check in checks:
            problem = self.cached(check.kind, check.source)
            if problem is UNCHECKED:
                problem, verdict = await self._run_one(check, deadline)
                if verdict:
                    self.remember(check.kind, check.source, problem)
            if problem is not None:
                raise InvalidRequestError(problem, param=check.param)

    async def compact_json_grammar(self, schema: str) -> str | None:
        """The EBNF of the compact JSON text of the schema's values (openai/compact_json.py, built in a worker within
        the time limit), or None where it cannot be built; kept by the schema's text, like verdicts."""
        key = _verdict_key("compact_json", schema)
        if key in self._grammars:
            self._grammars.move_to_end(key)
            return self._grammars[key]
        deadline = time.monotonic() + self.limits.check_timeout_s
        future = self._executor().submit(self._check_in_thread, "compact_json", schema, deadline)
        try:
            grammar = await asyncio.wait_for(asyncio.wrap_future(future), deadline - time.monotonic() + 1.0)
        except (_CheckTimedOut, _WorkerFailed, TimeoutError):
            return None  # the engine's own JSON guide still enforces the schema
        if grammar is None or len(grammar) <= CACHED_GRAMMAR_CHARS:
            self._grammars[key] = grammar
            if len(self._grammars) > CACHED_GRAMMARS:
                self._grammars.popitem(last=False)
        return grammar

    async def warm_up(self) -> None:
        """Start every worker now (the first waits for the forkserver's xgrammar import), so that no request's
        time limit pays for a start."""
        # Each start waits at the barrier, so the pool's threads take one each.
        barrier = threading.Barrier(self._workers)
        pool = self._executor()
        starts = [pool.submit(self._start_in_thread, barrier) for _ in range(self._workers)]
        await asyncio.gather(*(asyncio.wrap_future(start) for start in starts))

    def close(self) -> None:
        """Stop every worker process; a later check starts them again."""
        with self._lock:
            pool, self._pool = self._pool, None
            started, self._started = self._started, []
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for worker in started:
            worker.stop()

    async def _run_one(self, check: GuideCheck, deadline: float) -> tuple[str | None, bool]:
        """The check's problem (or None), and whether that is the text's verdict. A timeout is not: part of the
        time may have gone waiting for a busy worker, and a text that differs by one character would cost the
        same anyway; nor is a worker's death (it may have been killed for another reason)."""
        future = self._executor().submit(self._check_in_thread, check.kind, check.source, deadline)
        try:
            # The thread ends the check itself at the deadline; the margin lets it report so.
            return await asyncio.wait_for(asyncio.wrap_future(future), deadline - time.monotonic() + 1.0), True
        except (_CheckTimedOut, TimeoutError):
            limit = self.limits.check_timeout_s
            return f"Checking the guide took longer than {limit:g} s, the limit of --guide-check-timeout-s", False
        except _WorkerFailed as exc:
            logger.warning("guide check of %s failed: %s", check.param, exc)
            return "The guide could not be checked: checking it ended the checker", False

    def _check_in_thread(self, kind: CheckKind, source: str, deadline: float) -> str | None:
        if time.monotonic() >= deadline:  # waited for a free worker past the deadline
            raise _CheckTimedOut
        return self._thread_worker().check(kind, source, deadline)

    def _start_in_thread(self, barrier: threading.Barrier) -> None:
        self._thread_worker().start()
        barrier.wait(STARTUP_TIMEOUT_S)

    def _thread_worker(self) -> _Worker:
        worker: _Worker | None = getattr(self._local, "worker", None)
        if worker is None:
            worker = self._local.worker = _Worker(_forkserver())
            with self._lock:
                self._started.append(worker)
        return worker

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="guide-check")
            return self._pool


def _verdict_key(kind: CheckKind, source: str) -> bytes:
    return hashlib.blake2b(source.encode(errors="surrogatepass"), digest_size=16, person=kind.encode()[:16]).digest()


@functools.cache
def _forkserver() -> ForkServerContext:
    """The forkserver context; its server imports xgrammar (a missing one is skipped) and the worker once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["xgrammar", guide_worker.__name__])
    return context


@functools.cache
def default_guide_checker() -> GuideChecker:
    """The checker of models built without one (default limits, one worker)."""
    return GuideChecker()
