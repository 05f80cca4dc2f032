"""A real PostgreSQL server for tests (the Debian `postgresql` package's binaries), in a temporary folder.

`initdb` and `postgres` run as the `postgres` user when the tests run as root (the server refuses root), on a
free loopback port. A watcher process holds the read end of a pipe that only the test process writes to: when the
test process ends, however it ends (kill -9 included), the watcher stops the server, so none is left behind.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from gateway.devstack import free_port

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
DATABASE = "gateway"
_WATCHER = (
    "import os, signal, sys\n"
    "sys.stdin.buffer.read()\n"  # returns when the test process's end of the pipe closes
    "os.kill(int(sys.argv[1]), signal.SIGINT)\n"  # fast shutdown
)


def postgres_binary(name: str) -> str | None:
    """The path of a PostgreSQL program (on PATH, or in the Debian package's folder)."""
    found = shutil.which(name)
    if found:
        return found
    return next((str(folder / name) for folder in BIN_DIRS if (folder / name).exists()), None)


def available() -> bool:
    """Whether PostgreSQL's server programs are installed."""
    return postgres_binary("initdb") is not None and postgres_binary("postgres") is not None


def _as_server_user() -> dict[str, str]:
    """Popen's arguments that run the server's programs as `postgres` when the tests run as root."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def _wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    pg_isready = postgres_binary("pg_isready")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        ready = subprocess.run(
            [str(pg_isready), "-h", "127.0.0.1", "-p", str(port), "-d", "postgres", "-U", "gateway"],
            capture_output=True,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"postgres did not become ready:\n{log.read_text(errors='replace')}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh server with database `gateway`; yields its URL."""
    folder = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    log = folder / "server.log"
    initdb = [str(postgres_binary("initdb")), "-D", str(data), "-A", "trust", "-U", "gateway", "-E", "UTF8"]
    subprocess.run(initdb, check=True, capture_output=True, **_as_server_user())  # type: ignore[call-overload]
    port = free_port()
    options = ["-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(folder), "-c", "fsync=off"]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(postgres_binary("postgres")), *options], stdout=out, stderr=subprocess.STDOUT, **_as_server_user()
        )
    read_end, write_end = os.pipe()
    watcher = subprocess.Popen([sys.executable, "-c", _WATCHER, str(process.pid)], stdin=read_end)
    os.close(read_end)
    try:
        _wait_ready(port, process, log)
        subprocess.run(
            [str(postgres_binary("createdb")), "-h", "127.0.0.1", "-p", str(port), "-U", "gateway", DATABASE],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://gateway@127.0.0.1:{port}/{DATABASE}"
    finally:
        os.close(write_end)  # the watcher stops the server
        watcher.wait(timeout=10)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
