"""The dev stack: the real tritonserver binary from the nvidia-pytriton wheel, on CPU, with a small dev model.

with dev_triton(DevStackOptions(engine="synthetic")) as server:
    server.grpc_url, server.http_url, server.metrics_url
"""

from gateway.devstack.dev_stack import DevStackOptions, EngineKind, default_cache_root, dev_triton
from gateway.devstack.repository import render_model_repository, triton_repo_root
from gateway.devstack.triton_server import (
    TritonPorts,
    TritonServer,
    TritonStartError,
    free_port,
    start_triton,
)

__all__ = [
    "DevStackOptions",
    "EngineKind",
    "TritonPorts",
    "TritonServer",
    "TritonStartError",
    "default_cache_root",
    "dev_triton",
    "free_port",
    "render_model_repository",
    "start_triton",
    "triton_repo_root",
]
