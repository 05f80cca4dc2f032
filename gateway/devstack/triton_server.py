"""Run the real `tritonserver` binary from the `nvidia-pytriton` wheel on a model repository, without a GPU.

The wheel ships a full Triton (r24.10) with its Python backend and a backend stub per Python version. What it
takes to run it outside pytriton (DESIGN.md §3): a writable copy of the backends with the stub of the running
Python put into `backends/python/`, the wheel's bundled libraries and this interpreter's libpython on
`LD_LIBRARY_PATH`, and this interpreter's `bin` first on `PATH` so the stub finds the venv's site-packages.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from gateway.devstack.repository import model_names
from gateway.errors import ConfigurationError

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
PYTHON_BACKEND_THREADS = 512  # also in the production command gateway/deploy/launch.py prints
ORPHAN_GUARD = Path(__file__).with_name("orphan_guard.py")


class TritonStartError(ConfigurationError):
    """tritonserver did not come up; the message carries the tail of its log."""


class TritonStartAbort(TritonStartError):
    """tritonserver aborted on the Python backend's `boost::interprocess::lock_exception` while loading: a
    start-up race of that backend (tensorrtllm_backend #349, #521; seen here once in a CI run's many starts)
    that a fresh start gets past."""


START_ABORT_SIGNATURE = "boost::interprocess::lock_exception"
START_ATTEMPTS = 2


@dataclass(frozen=True)
class TritonPorts:
    """Loopback ports of one tritonserver."""

    grpc: int
    http: int
    metrics: int

    @classmethod
    def free(cls) -> TritonPorts:
        """Three distinct loopback ports that are free right now."""
        grpc, http, metrics = free_ports(3)
        return cls(grpc=grpc, http=http, metrics=metrics)


@dataclass
class TritonServer:
    """A running tritonserver process and where to reach it."""

    process: subprocess.Popen[bytes]
    ports: TritonPorts
    log_path: Path
    shm_prefix: str
    models: list[str] = field(default_factory=list)
    model_dir: Path | None = None  # the dev model behind a dev stack
    guard: subprocess.Popen[bytes] | None = None  # orphan_guard.py: ends the server if its starter dies
    guard_pipe: int | None = None  # the write end of the guard's stdin; closing it releases the guard

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC endpoint (what tritonclient.grpc expects)."""
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP/REST endpoint."""
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def metrics_url(self) -> str:
        """URL of Triton's Prometheus metrics."""
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the server's log."""
        return _tail(self.log_path, lines)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL of its process group after `timeout` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver did not exit within %.0f s; killing it", timeout)
        # The Python backend stubs are children of tritonserver; take the whole group down with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        _remove_shm_regions(self.shm_prefix)
        self._release_guard()

    def _release_guard(self) -> None:
        """Let the orphan guard go (it finds nothing left to end) and reap it."""
        if self.guard_pipe is not None:
            os.close(self.guard_pipe)
            self.guard_pipe = None
        if self.guard is not None:
            try:
                self.guard.wait(5)
            except subprocess.TimeoutExpired:
                self.guard.kill()
                self.guard.wait()
            self.guard = None


def pytriton_server_dir() -> Path:
    """The `tritonserver` folder inside the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "nvidia-pytriton is not installed; install the dev stack with pip install -e '.[devstack]'"
        )
    server_dir = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (server_dir / "bin" / "tritonserver").exists():
        raise ConfigurationError(f"no tritonserver binary in {server_dir}")
    return server_dir


def _bundled_libs_dir(server_dir: Path) -> Path:
    libs = server_dir.parents[1] / "nvidia_pytriton.libs"
    if not libs.is_dir():
        raise ConfigurationError(f"the nvidia-pytriton wheel's libraries are missing ({libs})")
    return libs


def _libpython_dir() -> Path:
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise ConfigurationError(
            f"{sys.executable} was built without a shared libpython; the Triton Python backend stub needs one "
            "(use a distribution or pyenv build with --enable-shared)"
        )
    return Path(sysconfig.get_config_var("LIBDIR"))


def prepare_backends(cache_root: Path) -> Path:
    """A writable copy of the wheel's backends with this Python's stub in `python/`, made once per version."""
    server_dir = pytriton_server_dir()
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server_dir / "python_backend_stubs" / py / "triton_python_backend_stub"
    if not stub.exists():
        raise ConfigurationError(f"the nvidia-pytriton wheel has no Python backend stub for Python {py}")
    version = importlib.metadata.version("nvidia-pytriton")
    target = cache_root / f"triton-backends-{version}-py{py}"
    if (target / "backends" / "python" / stub.name).exists():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".backends-", dir=cache_root))
    shutil.copytree(server_dir / "backends", staging / "backends")
    shutil.copytree(server_dir / "caches", staging / "caches")
    shutil.copy2(stub, staging / "backends" / "python" / stub.name)
    try:
        staging.rename(target)
    except OSError:  # another process won the race; its copy is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
    return target


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that are free on the loopback interface right now (bound together while they are
    chosen: one at a time, the kernel may hand out the same port twice)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port() -> int:
    """A TCP port that is free on the loopback interface right now."""
    return free_ports(1)[0]


def _server_environment(server_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    lib_dirs = [str(_bundled_libs_dir(server_dir)), str(_libpython_dir())]
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs)
    # The stub embeds an interpreter that finds site-packages through the first python on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _remove_shm_regions(prefix: str) -> None:
    for region in Path("/dev/shm").glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            region.unlink()


def _http_json(url: str, method: str = "GET", timeout: float = 2.0) -> tuple[int, object]:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _model_states(http_url: str) -> dict[str, tuple[str, str]]:
    """name -> (state, reason) from Triton's repository index."""
    _, index = _http_json(f"{http_url}/v2/repository/index", method="POST")
    if not isinstance(index, list):
        return {}
    return {m["name"]: (m.get("state", ""), m.get("reason", "")) for m in index if isinstance(m, dict)}


def _diagnose(log: str) -> str:
    if "No module named 'numpy'" in log:
        return "hint: the stub does not see the venv's site-packages (its bin must be first on PATH)"
    if "error while loading shared libraries" in log:
        return "hint: the stub cannot find the wheel's libraries or libpython (LD_LIBRARY_PATH)"
    return ""


def _wait_until_ready(server: TritonServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    http_url = f"http://127.0.0.1:{server.ports.http}"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log = server.log_tail()
            error = TritonStartAbort if START_ABORT_SIGNATURE in log else TritonStartError
            raise error(
                f"tritonserver exited with code {server.process.returncode} during start-up. {_diagnose(log)}\n"
                f"--- tail of {server.log_path} ---\n{log}"
            )
        try:
            states = _model_states(http_url)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            states = {}
        failed = {n: r for n, (s, r) in states.items() if s == "UNAVAILABLE"}
        if failed:
            detail = "; ".join(f"{n}: {r}" for n, r in sorted(failed.items()))
            raise TritonStartError(f"models failed to load: {detail}\n--- log tail ---\n{server.log_tail()}")
        if states and all(states.get(m, ("",))[0] == "READY" for m in server.models):
            with contextlib.suppress(urllib.error.URLError, OSError):
                if _http_json(f"{http_url}/v2/health/ready")[0] == 200:
                    return
        time.sleep(0.1)
    log = server.log_tail()
    raise TritonStartError(
        f"tritonserver not ready after {timeout:.0f} s (models still loading). {_diagnose(log)}\n"
        f"--- tail of {server.log_path} ---\n{log}"
    )


def _start_orphan_guard(group: int, shm_prefix: str) -> tuple[subprocess.Popen[bytes], int]:
    """orphan_guard.py watching this process for tritonserver's group; the write end of its stdin pipe."""
    read_end, write_end = os.pipe()  # not inheritable: only this process holds the write end
    try:
        guard = subprocess.Popen(
            [sys.executable, str(ORPHAN_GUARD), str(group), shm_prefix],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return guard, write_end


def start_triton(
    model_repository: Path,
    *,
    work_dir: Path,
    cache_root: Path,
    ports: TritonPorts | None = None,
    log_verbose: int = 0,
    ready_timeout: float = 120.0,
    models: list[str] | None = None,
) -> TritonServer:
    """Start tritonserver on `model_repository` and wait until each of `models` is READY (starting it once more
    after a TritonStartAbort). Neither it nor its Python backend stubs outlive this process (orphan_guard.py),
    however it ends."""
    start = functools.partial(
        _start_once, model_repository, work_dir, cache_root, ports, log_verbose, ready_timeout, models
    )
    for attempt in range(1, START_ATTEMPTS):
        try:
            return start()
        except TritonStartAbort:
            logger.warning("tritonserver aborted while loading (%s): starting it again", START_ABORT_SIGNATURE)
            (work_dir / "tritonserver.log").replace(work_dir / f"tritonserver-abort-{attempt}.log")
    return start()


def _start_once(
    model_repository: Path,
    work_dir: Path,
    cache_root: Path,
    ports: TritonPorts | None,
    log_verbose: int,
    ready_timeout: float,
    models: list[str] | None,
) -> TritonServer:
    server_dir = pytriton_server_dir()
    backends = prepare_backends(cache_root)
    ports = ports or TritonPorts.free()
    shm_prefix = f"trtllm_gw_{uuid.uuid4().hex[:8]}_"
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "tritonserver.log"
    command = [
        str(server_dir / "bin" / "tritonserver"),
        f"--model-repository={model_repository}",
        f"--backend-directory={backends / 'backends'}",
        f"--cache-directory={backends / 'caches'}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={ports.grpc}",
        "--http-address=127.0.0.1",
        f"--http-port={ports.http}",
        f"--metrics-port={ports.metrics}",
        "--disable-auto-complete-config",
        "--backend-config=python,shm-default-byte-size=4194304",
        # A decoupled BLS call holds one of these threads until its first response (python_be.cc
        # ExecuteBLSRequest), and responses are sent through them too: with the default 32, the 33rd BLS
        # request waiting for its first token stalls the whole BLS model, stop requests included.
        f"--backend-config=python,thread-pool-size={PYTHON_BACKEND_THREADS}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        "--exit-timeout-secs=5",
        f"--log-verbose={log_verbose}",
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=_server_environment(server_dir),
            cwd=work_dir,
            start_new_session=True,
        )
    server = TritonServer(
        process=process,
        ports=ports,
        log_path=log_path,
        shm_prefix=shm_prefix,
        models=models if models is not None else model_names(model_repository),
    )
    try:
        server.guard, server.guard_pipe = _start_orphan_guard(process.pid, shm_prefix)
        _wait_until_ready(server, ready_timeout)
    except BaseException:
        server.stop(timeout=5)
        raise
    logger.info("tritonserver ready: grpc %s, http %s", server.grpc_url, server.http_url)
    return server
