"""A response stored in SQLite survives its process being killed (kill -9) the moment after the write returned."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from gateway.state import StoreConfig, open_store

WRITER = """
import asyncio, os, signal, sys
from gateway.state import ResponseRecord, StoreConfig, open_store

async def main():
    store = await open_store(StoreConfig(url="sqlite://" + sys.argv[1]))
    for n in range(50):
        await store.responses.put(ResponseRecord("resp_%d" % n, "anonymous", 1.0, "completed", b"{}", b"[]"))
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: only what COMMIT made durable

asyncio.run(main())
"""


def test_every_committed_response_survives_a_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    ended = subprocess.run([sys.executable, "-c", WRITER, str(path)], capture_output=True, timeout=60)
    assert ended.returncode == -signal.SIGKILL, ended.stderr.decode()
    assert Path(str(path) + "-wal").exists()  # the writes are still in the write-ahead log

    async def read_back() -> list[str]:
        store = await open_store(StoreConfig(url=f"sqlite://{path}"))
        try:
            found = [await store.responses.get(f"resp_{n}", "anonymous") for n in range(50)]
            return [record.id for record in found if record is not None]
        finally:
            await store.close()

    assert len(asyncio.run(read_back())) == 50
