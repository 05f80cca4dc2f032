"""The BLS's route to tensorrt_llm, against the real tritonserver. The dev stack fills `engine_grpc_url` with
Triton's own gRPC address, so every BLS test of the suite runs on the gRPC route (bls_engine.py), which the
Python backend's decoupled BLS deadlock cannot reach (triton_repo/README.md, Known defects); the repository that
`trtllm-gateway repo` fills leaves it empty and takes `exec` (test_repo_fill_triton.py). Here: a BLS whose
address answers nothing ends each request with an error that says so, and the rest of Triton goes on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.devstack import DevStackOptions, TritonServer, default_cache_root, render_model_repository, start_triton
from gateway.devstack.dev_model import ensure_dev_model
from gateway.devstack.repository import triton_repo_root
from gateway.devstack.triton_server import free_port
from tests.e2e.test_triton_pipeline import PROMPT, Pipeline, generation_inputs

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def unreachable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, str]]:
    """tritonserver whose BLS is told to reach tensorrt_llm on a loopback port where nothing listens."""
    work = tmp_path_factory.mktemp("unreachable")
    model_dir = ensure_dev_model()
    address = f"127.0.0.1:{free_port()}"
    values = DevStackOptions(engine="synthetic").placeholder_values(model_dir, engine_grpc_url=address)
    repository = render_model_repository(triton_repo_root() / "dev", work / "repo", values)
    server: TritonServer = start_triton(repository, work_dir=work, cache_root=default_cache_root())
    server.model_dir = model_dir
    try:
        yield Pipeline(server), address
    finally:
        server.stop()


def test_a_bls_whose_engine_address_answers_nothing_says_so_and_triton_goes_on(
    unreachable: tuple[Pipeline, str],
) -> None:
    pipeline, address = unreachable
    for _ in range(2):  # the second request opens the broken stream again
        reply = pipeline.call("tensorrt_llm_bls", generation_inputs(PROMPT, 8, stream=True))
        assert reply.error is not None
        assert f"tensorrt_llm_bls: tensorrt_llm: gRPC stream to {address}: UNAVAILABLE" in reply.error
    assert pipeline.call("ensemble", generation_inputs(PROMPT, 8, stream=True)).error is None
