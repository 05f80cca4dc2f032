"""Triton's own OpenAI frontend (triton-inference-server/server, `python/openai`) as a front-end of the bench.

It runs Triton in-process (the `tritonserver` Python bindings): one process tree, the frontend and its Python
backend stubs, holds what the gateway and tritonserver hold between them. So it gets its own repository, rendered
with the bench's synthetic-engine settings, and its tree is measured whole (its "front-end CPU" is its system CPU).

Set-up (`bench/triton_frontend.sh setup`, cached under $TFE_WORK): the frontend's sources exported from a git dir
of triton-inference-server/server ($TRITON_MIRROR), the r24.10 `tritonserver` bindings compiled with g++ from a git
dir of triton-inference-server/core ($TRITON_CORE_MIRROR), and the frontend's requirements from PyPI into a venv
(about 280 MB, once). When a piece is missing the front-end is skipped with a note. On a machine without network,
`python -m bench.tritonfe install-carried FILE` lays out the same set-up from what `bench/triton_frontend.sh carry`
packed (bench/offline/run.sh does, when the carry has it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import wait_http_ok

SCRIPT = Path(__file__).resolve().parent / "triton_frontend.sh"
LAUNCHER = Path(__file__).resolve().parent / "tritonfe_launch.py"
PROJECT = Path(__file__).resolve().parent.parent
SERVER_REF = "e1db8a603d863b1317ee859bdeea2be19959462e"  # the script's defaults (TRITON_REF, TRITON_CORE_REF)
CORE_REF = "bfec7c61dc0939433f64f14e89b1973073eac8ba"
MODEL = "ensemble"
READY_TIMEOUT_S = 180.0
SETUP_TIMEOUT_S = 900.0


class FrontendSkipped(Exception):
    """A front-end whose prerequisites are missing here: skipped with this note, not failed."""


@dataclass(frozen=True)
class Layout:
    """Where the script puts things under $TFE_WORK."""

    work: Path
    server_ref: str = SERVER_REF
    core_ref: str = CORE_REF

    @property
    def python(self) -> Path:
        """The frontend venv's interpreter."""
        return self.work / "venv" / "bin" / "python"

    @property
    def frontend_dir(self) -> Path:
        """`openai_frontend/` exported from the server mirror."""
        return self.work / "src" / f"openai@{self.server_ref[:12]}" / "openai_frontend"

    @property
    def launcher(self) -> Path:
        """The wrapper that fills in the in-process server options."""
        return LAUNCHER

    @property
    def stamp(self) -> Path:
        """Present once the venv and bindings are built."""
        return self.work / "venv" / f".tfe-{self.server_ref[:12]}-{self.core_ref[:12]}"

    def ready(self) -> bool:
        """Whether the set-up is complete (then no mirror, compiler or PyPI is needed to start it)."""
        return self.stamp.exists() and self.python.exists() and self.frontend_dir.exists()


def layout(env: Mapping[str, str]) -> Layout:
    """The layout for these environment variables (TFE_WORK, TRITON_REF, TRITON_CORE_REF)."""
    work = env.get("TFE_WORK") or str(Path(env.get("TMPDIR") or "/tmp") / "triton-openai-frontend")
    return Layout(Path(work), env.get("TRITON_REF") or SERVER_REF, env.get("TRITON_CORE_REF") or CORE_REF)


def missing(env: Mapping[str, str], which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """What the set-up lacks here (empty: it can be built). A complete earlier set-up needs nothing more."""
    if layout(env).ready():
        return []
    gaps = []
    for name, repo in (("TRITON_MIRROR", "server"), ("TRITON_CORE_MIRROR", "core")):
        value = env.get(name)
        if not value:
            gaps.append(f"{name} is not set (a git dir of github.com/triton-inference-server/{repo})")
        elif not Path(value).exists():
            gaps.append(f"{name}={value} does not exist")
    for tool in ("g++", "curl", "git"):
        if which(tool) is None:
            gaps.append(f"no {tool} on PATH")
    return gaps


def shm_prefix(run_dir: Path) -> str:
    """The Python backend's shared-memory prefix for one frontend instance (cleaned up after it)."""
    return "tfe_" + hashlib.md5(str(run_dir).encode()).hexdigest()[:8] + "_"


def command(lay: Layout, repository: Path, model_dir: Path, port: int) -> list[str]:
    """The frontend's command line (`openai_frontend/main.py` through the launcher)."""
    return [
        str(lay.python), str(lay.launcher), str(lay.frontend_dir), "--",
        "--model-repository", str(repository),
        "--tokenizer", str(model_dir),
        "--host", "127.0.0.1",
        "--openai-port", str(port),
        "--uvicorn-log-level", "warning",
    ]  # fmt: skip


def environment(
    base: Mapping[str, str], project_bin: Path, ld_dirs: list[str], backend_root: Path, prefix: str
) -> dict[str, str]:
    """The frontend's environment: the project venv's bin first on PATH (the stubs find their site-packages through
    it, as in the dev stack), libtritonserver's and libpython's folders on LD_LIBRARY_PATH."""
    env = dict(base)
    env["PATH"] = os.pathsep.join(filter(None, [str(project_bin), base.get("PATH")]))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [*ld_dirs, base.get("LD_LIBRARY_PATH")]))
    env.update({"TFE_BACKEND_ROOT": str(backend_root), "TFE_SHM_PREFIX": prefix, "PYTHONUNBUFFERED": "1"})
    return env


def ensure_setup(log_dir: Path) -> Layout:
    """Build the frontend's venv and bindings once (the script's `setup`); FrontendSkipped when it cannot."""
    env = dict(os.environ)
    lay = layout(env)
    if lay.ready():
        return lay
    gaps = missing(env)
    if gaps:
        raise FrontendSkipped("Triton's OpenAI frontend is not set up: " + "; ".join(gaps))
    env.setdefault("TFE_PROJECT", str(PROJECT))
    env.setdefault("TFE_PROJECT_VENV", sys.prefix)
    env["TFE_WORK"] = str(lay.work)
    log = log_dir / "tritonfe_setup.log"
    with log.open("wb") as out:
        done = subprocess.run(
            ["bash", str(SCRIPT), "setup"], stdout=out, stderr=subprocess.STDOUT, env=env, timeout=SETUP_TIMEOUT_S
        )
    if done.returncode != 0 or not lay.ready():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:])
        raise FrontendSkipped(f"set-up of Triton's OpenAI frontend failed (log {log}):\n{tail}")
    return lay


def _library_dirs() -> list[str]:
    import sysconfig

    import pytriton

    libs = Path(pytriton.__file__).resolve().parents[1] / "nvidia_pytriton.libs"
    return [str(libs), str(sysconfig.get_config_var("LIBDIR"))]


def engines_running(metrics_url: str) -> float:
    """`dev_engine_running_requests` summed over the frontend's in-process engines (its /metrics)."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("dev_engine_running_requests")
    )


def start(
    engine: Any, port: int, cpus: tuple[int, ...], run_dir: Path, launch: Callable[..., subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], Path, Callable[[], None]]:
    """Render the repository with `engine` (a DevStackOptions; exclude_input_in_output on, since the frontend never
    sends it for chat), start the frontend pinned to `cpus`, wait until `ensemble` is served. Returns the process,
    its log and a clean-up for its shared memory."""
    import dataclasses

    from gateway.devstack.dev_model import ensure_dev_model
    from gateway.devstack.dev_stack import default_cache_root
    from gateway.devstack.repository import render_model_repository, triton_repo_root
    from gateway.devstack.triton_server import prepare_backends

    lay = ensure_setup(run_dir.parent)
    cache = default_cache_root()
    model_dir = ensure_dev_model(cache)
    options = dataclasses.replace(engine, exclude_input_in_output=True)
    repository = run_dir / "model_repository"
    if repository.exists():
        shutil.rmtree(repository)
    run_dir.mkdir(parents=True, exist_ok=True)
    render_model_repository(triton_repo_root() / "dev", repository, options.placeholder_values(model_dir))
    prefix = shm_prefix(run_dir)
    env = environment(os.environ, Path(sys.executable).parent, _library_dirs(), prepare_backends(cache), prefix)
    log_path = run_dir / "frontend.log"
    process = launch(command(lay, repository, model_dir, port), env, cpus, log_path)

    def cleanup() -> None:
        for region in Path("/dev/shm").glob(prefix + "*"):
            with contextlib.suppress(OSError):
                region.unlink()

    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health/ready", READY_TIMEOUT_S, process)
        wait_http_ok(f"http://127.0.0.1:{port}/v1/models/{MODEL}", 30.0, process)
    except Exception:
        with contextlib.suppress(Exception):
            from bench.procs import stop_process

            stop_process(process)
        cleanup()
        raise
    return process, log_path, cleanup


def install_carried(archive: Path, lay: Layout, project_site: Path, libtriton: Path) -> None:
    """Lay out a finished set-up from `bench/triton_frontend.sh carry`'s archive: the frontend's sources, and a venv
    of this interpreter's base Python whose site is the archive's (the frontend's own versions first), then
    `project_site` (the rest: numpy 1.26, transformers), with the bindings linked to `libtriton`."""
    source = lay.frontend_dir.parent
    source.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as packed:
        packed.extractall(source, filter="tar")
    venv = lay.work / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [str(lay.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    for entry in (source / "site").iterdir():
        shutil.move(entry, site / entry.name)
    (source / "site").rmdir()
    (site / "tritonserver" / "_c" / "libtritonserver.so").symlink_to(libtriton)
    (site / "zz_project_venv.pth").write_text(f"{project_site}\n")
    lay.stamp.touch()


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.tritonfe install-carried FILE`: the set-up from a carried archive, under $TFE_WORK."""
    import argparse
    import sysconfig

    parser = argparse.ArgumentParser(prog="python -m bench.tritonfe")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "install-carried", help="lay out the set-up packed by bench/triton_frontend.sh carry"
    ).add_argument("archive", type=Path)
    args = parser.parse_args(argv)
    lay = layout(os.environ)
    libtriton = next(Path(_library_dirs()[0]).glob("libtritonserver-*.so"))
    install_carried(args.archive, lay, Path(sysconfig.get_paths()["purelib"]), libtriton)
    print(f"Triton's OpenAI frontend set up in {lay.work}")


if __name__ == "__main__":
    main()
