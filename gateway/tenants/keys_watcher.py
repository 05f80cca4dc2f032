"""Reloading the keys file: when it changes (its size, time or inode, looked at every `poll_s`) and on SIGHUP.

A reload never fails a request: the new keys are read and checked off the event loop, then put in force at once;
running requests keep the key they were admitted with. A file that does not load (bad YAML, an unknown model, a
half-written file) leaves the previous keys in force, is logged with the entry and field, and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from gateway.errors import ConfigurationError
from gateway.telemetry.tenant_metrics import TenantMetrics
from gateway.tenants.keys import ApiKey, KeyRing
from gateway.tenants.keys_file import load_keys_file

logger = logging.getLogger(__name__)

POLL_S = 2.0
Signature = tuple[int, int, int]


def _signature(path: Path) -> Signature | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size, found.st_ino


class KeysWatcher:
    """Keeps a KeyRing in step with its keys file."""

    def __init__(
        self,
        ring: KeyRing,
        path: Path,
        names: Mapping[str, str],
        other_keys: dict[bytes, ApiKey],
        metrics: TenantMetrics | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self.ring = ring
        self.path = path
        self._names = dict(names)
        self._other_keys = other_keys  # `--api-keys`, which stay in force beside the file's
        self._metrics = metrics
        self.poll_s = poll_s
        self._seen = _signature(path)
        self._task: asyncio.Task[None] | None = None
        self._signalled: asyncio.Task[bool] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start watching."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._watch())

    async def close(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def request_reload(self) -> None:
        """Reload soon (a signal handler's call: safe from any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._reload_now)

    def _reload_now(self) -> None:
        self._signalled = asyncio.ensure_future(self.reload())

    async def reload(self) -> bool:
        """Read the file again and put its keys in force; False (the previous keys stay) if it does not load."""
        self._seen = _signature(self.path)
        try:
            keys = await asyncio.to_thread(load_keys_file, self.path, self._names)
        except ConfigurationError as exc:
            logger.error("keys file not reloaded, the previous keys stay in force: %s", exc)
            self._count("error")
            return False
        self.ring.replace(self._other_keys | keys)
        logger.info("keys file reloaded: %d keys of %d tenants", len(keys), len({k.tenant for k in keys.values()}))
        self._count("ok")
        return True

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.key_reloads.labels(result).inc()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if _signature(self.path) != self._seen:
                await self.reload()
