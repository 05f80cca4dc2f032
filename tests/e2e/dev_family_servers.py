"""Helpers for the e2e tests of the family dev models: a `tensorrt_llm`-only Triton per family, guide inputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import serialize_byte_tensor

from gateway.devstack import DevStackOptions, default_cache_root, render_model_repository, start_triton
from gateway.devstack.families import ensure_family_model
from gateway.devstack.repository import triton_repo_root
from tests.e2e.test_dev_engine import MODEL, Engine, Reply

FAMILY_NAMES = ("dev", "qwen", "deepseek", "mistral")


def serve_engine(tmp: Path, **options: Any) -> Iterator[Engine]:
    """Triton with only the dev `tensorrt_llm` model, rendered with `DevStackOptions(**options)`."""
    values = DevStackOptions(**options)
    model_dir = ensure_family_model(values.family)
    source = tmp / "source"
    source.mkdir()
    (source / MODEL).symlink_to(triton_repo_root() / "dev" / MODEL)
    repository = render_model_repository(source, tmp / "repository", values.placeholder_values(model_dir))
    server = start_triton(repository, work_dir=tmp, cache_root=default_cache_root())
    try:
        yield Engine(server, model_dir)
    finally:
        server.stop()


def guided_request(engine: Engine, prompt: list[int], max_tokens: int, guide_type: str, guide: str, **inputs: Any):
    """A ModelInferRequest with the two guided-decoding string inputs added."""
    request = engine.request(prompt, max_tokens, **inputs)
    for name, value in (("guided_decoding_guide_type", guide_type), ("guided_decoding_guide", guide)):
        array = np.array([[value.encode()]], dtype=np.object_)
        tensor = request.inputs.add(name=name, datatype="BYTES")
        tensor.shape.extend(array.shape)
        request.raw_input_contents.append(serialize_byte_tensor(array).item())
    return request


async def collect(engine: Engine, request: Any) -> Reply:
    """Run a prepared request to its final response (or error)."""
    reply = Reply()
    async for outputs, final, error in engine.stream(request):
        reply.responses.append(outputs)
        reply.finals.append(final)
        if error or final:
            reply.error = error
            break
    return reply
