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
    "gateway.state.sqlite",  # the default store, imported when the app starts (aiosqlite)
    "httpcore",  # httpx's transport, made when the app starts (the image fetcher); httpx imports it lazily
    "h11",
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
    "bench.run",
    "bench.loadgen",
    "bench.profile",
    "bench.app_cost",  # run as `run.sh --module bench.app_cost` (the app over a stand-in Triton)
]
SKIP = {"trtllm-gateway", "pip", "setuptools", "matplotlib", "litellm", "torch"}


def unimportable(modules: list[str]) -> list[str]:
    """Import each module; `module: why` for each one that fails."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any failure means the carry cannot be listed: say which module and why
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    return failed


def main() -> int:
    """Import, then print the distributions behind what got loaded (exit 2 naming what could not be imported)."""
    failed = unimportable(MODULES)
    if failed:
        print("needed_dists: cannot import what the benchmark's processes import:", file=sys.stderr)
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        print("install the bench extra into this Python: pip install -e '.[bench]'", file=sys.stderr)
        return 2
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
