"""A repository filled by `trtllm-gateway repo` loads in the real tritonserver once the dev engine stands in for
the TensorRT-LLM one, and the gateway answers through it (ensemble and BLS)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import httpx
import pytest

from gateway.deploy.repo_fill import ContainerPaths, FillOptions, fill_repository
from gateway.devstack import DevStackOptions, TritonServer, default_cache_root, render_model_repository, start_triton
from gateway.devstack.dev_model import DEV_MODEL_NAME, ensure_dev_model
from gateway.devstack.repository import triton_repo_root
from tests.e2e.conftest import start_gateway, stop_gateway
from tests.unit.fake_trtllm_engine import write_engine

pytestmark = pytest.mark.e2e
ONE_GPU = {
    "pretrained_config.mapping.world_size": 1,
    "pretrained_config.mapping.tp_size": 1,
    "pretrained_config.mapping.moe_tp_size": 1,
    "build_config.max_batch_size": 64,  # the dev engine's, which an ensemble may not exceed
}


@pytest.fixture(scope="module")
def filled_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """tritonserver on the filled repository, its tensorrt_llm replaced by the rendered dev engine."""
    work = tmp_path_factory.mktemp("filled")
    model_dir = ensure_dev_model()
    repository = work / "repo"
    # Paths "as the container sees them" are this host's paths here: the server runs on the host.
    paths = ContainerPaths(PurePosixPath(repository), PurePosixPath(work / "engine"), PurePosixPath(model_dir))
    fill_repository(FillOptions(write_engine(work / "engine", ONE_GPU), model_dir, repository, container=paths))
    dev = render_model_repository(
        triton_repo_root() / "dev", work / "dev", DevStackOptions(engine="hf").placeholder_values(model_dir)
    )
    shutil.rmtree(repository / "tensorrt_llm")
    shutil.copytree(dev / "tensorrt_llm", repository / "tensorrt_llm")
    server = start_triton(repository, work_dir=work, cache_root=default_cache_root())
    server.model_dir = model_dir
    try:
        yield server
    finally:
        server.stop()


def test_every_filled_model_is_ready(filled_triton: TritonServer) -> None:
    for model in ("ensemble", "preprocessing", "postprocessing", "tensorrt_llm_bls", "tensorrt_llm"):
        response = httpx.get(f"{filled_triton.http_url}/v2/models/{model}/ready", timeout=5)
        assert response.status_code == 200, (model, filled_triton.log_tail())


@pytest.mark.parametrize("triton_model", ["ensemble", "tensorrt_llm_bls"])
def test_gateway_answers_through_the_filled_repository(
    filled_triton: TritonServer, tmp_path: Path, triton_model: str
) -> None:
    gateway = start_gateway(filled_triton, tmp_path, "--triton-model", triton_model)
    try:
        reply = httpx.post(
            f"{gateway.v1}/chat/completions",
            json={"model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] > 0
        # The filled BLS takes exec (engine_grpc_url empty): the gateway tells the operator what that risks.
        warned = "can deadlock Triton's Python backend under load" in gateway.log_path.read_text()
        assert warned == (triton_model == "tensorrt_llm_bls")
    finally:
        stop_gateway(gateway)
