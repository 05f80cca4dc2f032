"""e2e fixtures: the real tritonserver on triton_repo/dev and the real gateway process in front of it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.devstack import DevStackOptions, TritonServer, dev_triton, free_port
from gateway.devstack.dev_model import DEV_MODEL_NAME

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def hf_triton() -> Iterator[TritonServer]:
    """Triton with the dev model on the `hf` engine (a real transformers model on CPU)."""
    with dev_triton(DevStackOptions(engine="hf")) as server:
        yield server


@dataclass
class GatewayProcess:
    """A running `trtllm-gateway serve` process."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    model: str = DEV_MODEL_NAME

    @property
    def v1(self) -> str:
        """Base URL for OpenAI clients."""
        return f"{self.url}/v1"

    def log(self) -> str:
        """What the gateway printed."""
        return self.log_path.read_text(errors="replace")


def start_gateway(
    triton: TritonServer | None,
    log_dir: Path,
    *extra: str,
    triton_url: str | None = None,
    wait_for: str = "/health/ready",
    models_file: Path | None = None,
    port: int | None = None,
) -> GatewayProcess:
    """Start the gateway CLI against `triton` (or `triton_url`, or the models file's upstreams) on `port` (a free
    one by default) and wait until `wait_for` answers 200."""
    port = port or free_port()
    log_path = log_dir / f"gateway-{port}.log"
    if models_file is not None:
        model = ["--models-file", str(models_file)]
    else:
        assert triton is not None
        model = ["--triton-url", triton_url or triton.grpc_url, "--tokenizer", str(triton.model_dir)]
        model += ["--served-model-name", DEV_MODEL_NAME]
    if "--state-dir" not in extra and "--store-url" not in extra:  # a store of its own, not the user's
        extra = (*extra, "--state-dir", str(log_dir / f"state-{port}"))
    command = [sys.executable, "-m", "gateway", "serve", *model, "--port", str(port), *extra]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    gateway = GatewayProcess(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}:\n{gateway.log()}")
        try:
            if httpx.get(f"{gateway.url}{wait_for}", timeout=1).status_code == 200:
                return gateway
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"gateway not ready after 60 s:\n{gateway.log()}")


def stop_gateway(gateway: GatewayProcess) -> None:
    """SIGTERM, then SIGKILL."""
    gateway.process.terminate()
    try:
        gateway.process.wait(10)
    except subprocess.TimeoutExpired:
        gateway.process.kill()
        gateway.process.wait()


@pytest.fixture(scope="session")
def gateway(hf_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway in front of the ensemble."""
    process = start_gateway(hf_triton, tmp_path_factory.mktemp("gateway"))
    yield process
    stop_gateway(process)


@pytest.fixture(scope="session")
def bls_gateway(hf_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway in front of tensorrt_llm_bls."""
    process = start_gateway(hf_triton, tmp_path_factory.mktemp("gateway-bls"), "--triton-model", "tensorrt_llm_bls")
    yield process
    stop_gateway(process)


@pytest.fixture(scope="session")
def direct_gateway(hf_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway calling tensorrt_llm directly; the dev engine returns logits, as one built to gather them."""
    process = start_gateway(
        hf_triton, tmp_path_factory.mktemp("gateway-direct"), "--triton-model", "tensorrt_llm", "--engine-logits"
    )
    yield process
    stop_gateway(process)


@pytest.fixture(scope="session")
def mode_gateways(
    gateway: GatewayProcess, bls_gateway: GatewayProcess, direct_gateway: GatewayProcess
) -> dict[str, GatewayProcess]:
    """The three upstream modes in front of the same hf Triton."""
    return {"ensemble": gateway, "bls": bls_gateway, "direct": direct_gateway}
