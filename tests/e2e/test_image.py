"""The gateway image (docker/Dockerfile), built with buildah and run in front of the dev Triton on this host.

Builds the Debian base locally first (docker/local-base.sh) when it is not in buildah's store, as CI machines
reach the Debian mirror but no registry. Needs root and `buildah` (CI installs it); skipped without them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from gateway.devstack import TritonServer, free_port
from gateway.devstack.dev_model import DEV_MODEL_NAME

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/trtllm-gateway:e2e"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
pytestmark = [
    pytest.mark.e2e,
    # A cold build (debootstrap, apt, pip from PyPI) takes 2-4 minutes on a fresh 2-core machine.
    pytest.mark.timeout(900),
    pytest.mark.skipif(shutil.which("buildah") is None or os.geteuid() != 0, reason="needs root and buildah"),
]


def build_command() -> list[str]:
    """buildah's equivalent of `docker build`, in a chroot and with the host's network and CA bundle for pip."""
    command = [
        "buildah", "bud", "--quiet", "--isolation", "chroot", "--network", "host", "--layers", "--format", "docker",
        "-f", str(ROOT / "docker" / "Dockerfile"), "-t", IMAGE,
    ]  # fmt: skip
    if HOST_CA.is_file():
        command += [
            "-v",
            f"{HOST_CA}:/etc/ssl/certs/host-ca.crt:ro",
            "--build-arg",
            "PIP_CERT=/etc/ssl/certs/host-ca.crt",
        ]
    return [*command, str(ROOT)]


@pytest.fixture(scope="module")
def image() -> str:
    """The image, built from the working tree (layers cached between runs)."""
    subprocess.run([str(ROOT / "docker" / "local-base.sh")], check=True, timeout=600)
    started = time.monotonic()
    subprocess.run(build_command(), check=True, timeout=900, stdout=subprocess.DEVNULL)
    print(f"image built in {time.monotonic() - started:.0f} s")
    return IMAGE


@pytest.fixture
def container(image: str) -> Iterator[str]:
    """A working container of the image, removed afterwards."""
    name = subprocess.run(["buildah", "from", "--quiet", image], check=True, capture_output=True, text=True).stdout
    yield name.strip()
    subprocess.run(["buildah", "rm", name.strip()], check=False, capture_output=True)


def run_in(container: str, *command: str, env: dict[str, str] | None = None, mounts: tuple[str, ...] = ()) -> list[str]:
    """The `buildah run` command line for `command` in the container (host network, like `--network host`)."""
    options = [f"--env={key}={value}" for key, value in (env or {}).items()]
    options += [f"--volume={mount}" for mount in mounts]
    return ["buildah", "run", "--isolation", "chroot", "--network", "host", *options, container, "--", *command]


def entrypoint_processes(runner_pid: int) -> list[psutil.Process]:
    """The Python processes under `buildah run` that run the gateway (buildah's own chroot helpers excluded): one,
    if nothing such as a shell wraps the entrypoint."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [
            child
            for child in psutil.Process(runner_pid).children(recursive=True)
            if child.cmdline()[:1]
            and child.cmdline()[0].endswith("/python3")
            and "trtllm-gateway" in child.cmdline()[1]
        ]
        if found:
            return found
        time.sleep(0.1)
    return []


def image_size_mb(image: str) -> float:
    """The uncompressed size of the image."""
    out = subprocess.run(["buildah", "inspect", "--format", "{{.Size}}", image], capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip().isdigit():
        return int(out.stdout) / 1e6
    listing = subprocess.run(
        ["buildah", "images", "--format", "{{.Size}}", image], check=True, capture_output=True, text=True
    ).stdout.split()
    number, unit = float(listing[0]), listing[1] if len(listing) > 1 else "MB"
    return number * {"kB": 1e-3, "KB": 1e-3, "MB": 1, "GB": 1e3}[unit]


def test_image_is_small_non_root_and_probes_health(image: str) -> None:
    config = subprocess.run(
        ["buildah", "inspect", "--format", "{{.Docker.Config.User}}|{{.Docker.Config.Entrypoint}}", image],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert config == "10001:10001|[trtllm-gateway serve]"
    health = subprocess.run(
        ["buildah", "inspect", "--format", "{{.Docker.Config.Healthcheck.Test}}", image],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "/health/live" in health
    size = image_size_mb(image)
    print(f"image size {size:.0f} MB")
    assert size < 310  # 298 MB before images in requests: + Pillow (9 MB, trimmed), - transformers' kernels (5 MB)


def test_image_serves_a_chat_completion_and_drains_on_sigterm(
    container: str, hf_triton: TritonServer, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "GATEWAY_TRITON_URL": hf_triton.grpc_url,
        "GATEWAY_PORT": str(port),
        "GATEWAY_SERVED_MODEL_NAME": DEV_MODEL_NAME,
    }
    log_path = tmp_path / "gateway.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        # The image's entrypoint, run the way the container runtime would: PID 1 gets the signals.
        process = subprocess.Popen(
            run_in(container, "trtllm-gateway", "serve", env=env, mounts=(f"{hf_triton.model_dir}:/tokenizer:ro",)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() - started < 120, log_path.read_text()
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        print(f"gateway in the image ready {time.monotonic() - started:.1f} s after start")
        probe = subprocess.run(
            run_in(container, "python3", "-m", "gateway.deploy.probe", "/health/live", env={"GATEWAY_PORT": str(port)}),
            capture_output=True, timeout=60,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]
        assert reply.json()["usage"]["completion_tokens"] > 0
        # What a container runtime does on stop: SIGTERM to the entrypoint process, which must be the gateway
        # itself (exec form, no shell in between), while a stream is running; the stream still completes.
        found = entrypoint_processes(process.pid)
        assert len(found) == 1, [child.cmdline() for child in found]
        gateway = found[0]
        with httpx.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json={"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 48,
                  "stream": True, "temperature": 0},
            timeout=60,
        ) as stream:  # fmt: skip
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")
            gateway.send_signal(signal.SIGTERM)
            rest = list(lines)
        assert "data: [DONE]" in rest, rest[-3:]
        assert process.wait(30) == 0, log_path.read_text()
        assert "draining" in log_path.read_text()
    finally:
        # buildah's chroot helper outlives a killed `buildah run`: end what it started, too.
        leftovers = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
        for child in leftovers:
            child.kill()
        if process.poll() is None:
            process.kill()
            process.wait()
