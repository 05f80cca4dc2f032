"""start_triton: a start that aborts on the Python backend's start-up race is made once more, nothing else is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.devstack import triton_server
from gateway.devstack.triton_server import (
    START_ABORT_SIGNATURE,
    TritonPorts,
    TritonServer,
    TritonStartAbort,
    TritonStartError,
    start_triton,
)


def _dead_server(tmp_path: Path, log: str) -> TritonServer:
    log_path = tmp_path / "tritonserver.log"
    log_path.write_text(log)
    process = subprocess.Popen([sys.executable, "-c", "import os; os.abort()"])
    process.wait()
    return TritonServer(process=process, ports=TritonPorts(1, 2, 3), log_path=log_path, shm_prefix="x_", models=[])


@pytest.mark.parametrize(("log", "error"), [(START_ABORT_SIGNATURE, TritonStartAbort), ("no space", TritonStartError)])
def test_an_abort_on_the_lock_exception_is_told_apart(tmp_path: Path, log: str, error: type[Exception]) -> None:
    server = _dead_server(tmp_path, f"I1206 loading\nterminate called after throwing {log}\n")
    with pytest.raises(error) as raised:
        triton_server._wait_until_ready(server, timeout=5)
    assert type(raised.value) is error and "exited with code -6" in str(raised.value)


def test_a_start_abort_is_retried_once_and_other_failures_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str] = []
    outcomes: list[BaseException | str] = [TritonStartAbort("abort"), "server"]

    def start_once(*_: object) -> object:
        (tmp_path / "tritonserver.log").write_text("log")
        attempts.append("start")
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(triton_server, "_start_once", start_once)
    assert start_triton(tmp_path, work_dir=tmp_path, cache_root=tmp_path) == "server"
    assert attempts == ["start", "start"] and (tmp_path / "tritonserver-abort-1.log").exists()

    outcomes[:] = [TritonStartAbort("abort"), TritonStartAbort("abort again")]
    with pytest.raises(TritonStartAbort, match="abort again"):  # two aborts in a row: not a race
        start_triton(tmp_path, work_dir=tmp_path, cache_root=tmp_path)
    outcomes[:] = [TritonStartError("bad model")]
    attempts.clear()
    with pytest.raises(TritonStartError, match="bad model"):
        start_triton(tmp_path, work_dir=tmp_path, cache_root=tmp_path)
    assert attempts == ["start"]
