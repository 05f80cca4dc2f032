"""Ends a dev tritonserver and its Python backend stubs once the process that started it is gone, however it went.

`start_triton` runs this file (standard library only, no package import: it starts in tens of milliseconds) with
the read end of a pipe as its stdin; only the starting process holds the write end. Reading stdin returns when
that end closes: a normal stop, or the starter's death by any signal, SIGKILL included (the kernel closes its
file descriptors). A signal at the starter's death (`PR_SET_PDEATHSIG`) would reach tritonserver only, not the
stubs it starts (they outlive a tritonserver killed hard), and it fires when the starting thread ends, which need
not be the process. So the guard then ends the server's whole process group (tritonserver is its leader; the
stubs are in it): SIGTERM to tritonserver first, which stops its stubs and frees its shared memory, and after
`--grace-s` SIGKILL to whatever of the group is still there, then the group's `/dev/shm` regions are removed.

Only processes whose process group is the server's and whose program is tritonserver or the backend stub are
signalled, so a reused process id is never hit. Its own session keeps a Ctrl-C in the terminal from ending it
before the starter has cleaned up.

    python orphan_guard.py PROCESS_GROUP SHM_PREFIX [--grace-s SECONDS] < pipe
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

SERVER_PROGRAMS = ("tritonserver", "triton_python_backend_stub")


def server_processes(group: int) -> list[int]:
    """The tritonserver and stub processes of process group `group` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            program = Path((entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")).name
        except OSError:
            continue  # gone meanwhile, or not ours to read
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after its last ")".
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[2]) == group and program in SERVER_PROGRAMS:
            found.append(int(entry.name))
    return found


def end_group(group: int, shm_prefix: str, grace_s: float) -> None:
    """SIGTERM to the group's leader (tritonserver), SIGKILL to what is left after `grace_s`, then shm clean-up."""
    if group in server_processes(group):
        with contextlib.suppress(ProcessLookupError):
            os.kill(group, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while server_processes(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in server_processes(group):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for region in Path("/dev/shm").glob(f"{shm_prefix}*"):
        with contextlib.suppress(OSError):
            region.unlink()


def main(argv: list[str] | None = None) -> int:
    """Wait for the end of stdin, then end the server's group."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group", type=int, help="tritonserver's process group (its pid)")
    parser.add_argument("shm_prefix", help="the Python backend's shared-memory region prefix")
    parser.add_argument("--grace-s", type=float, default=5.0, help="SIGTERM to SIGKILL")
    args = parser.parse_args(argv)
    if not args.shm_prefix.startswith("trtllm_gw_"):  # never a glob over other programs' regions
        parser.error("the shm prefix must be one start_triton made")
    sys.stdin.buffer.read()
    end_group(args.group, args.shm_prefix, args.grace_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
