"""Print `name==version` of every distribution the gateway, the load generator and Triton's Python models import.

Imports what those processes import (and loads the dev tokenizer, which triggers transformers' lazy imports), then
maps the loaded top-level modules to installed distributions. Used by prepare_carry.sh to pick the wheels to carry.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

MODULES = [
    "gateway.app",
    "gateway.cli",
    "gateway.devstack",
    "gateway.devstack.dev_model",
    "uvicorn",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on",
    "uvloop",
    "httptools",
    "grpc",
    "grpc.aio",
    "tritonclient.grpc",
    "tritonclient.grpc.aio",
    "tritonclient.utils",
    "transformers",
    "tokenizers",
    "numpy",
    "orjson",
    "psutil",
    "pydantic_settings",
    "dotenv",  # pydantic-settings imports it at load time; missing on the offline run of 2026-11-23 (16 CPUs, one H100)
    "prometheus_client",
    "sse_starlette",
    "bench.run",
    "bench.loadgen",
    "bench.profile",
]
SKIP = {"trtllm-gateway", "pip", "setuptools", "matplotlib", "litellm", "torch"}


def main() -> int:
    """Import, then print the distributions behind what got loaded."""
    for name in MODULES:
        importlib.import_module(name)
    from gateway.core.tokens import load_tokenizer
    from gateway.devstack import default_cache_root
    from gateway.devstack.dev_model import ensure_dev_model

    tokenizer = load_tokenizer(ensure_dev_model(default_cache_root()))
    tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    tokenizer.decode(tokenizer.encode("hello world"))
    owners = importlib.metadata.packages_distributions()
    dists = set()
    for module in list(sys.modules):
        top = module.split(".")[0]
        for dist in owners.get(top, []):
            dists.add(dist)
    for dist in sorted(dists, key=str.lower):
        if dist.lower() in SKIP or dist.lower().startswith("nvidia"):
            continue
        print(f"{dist}=={importlib.metadata.version(dist)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
