"""LoRA adapters served as their own model ids, against the real dev Triton (synthetic engine, LoRA cache of one
adapter): each adapter writes its own text, and an adapter evicted from the engine's cache is sent again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest

from gateway.devstack import DevStackOptions, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e


def adapter_folder(folder: Path, seed: int) -> Path:
    """An adapter in NVIDIA's layout: two modules' weights (FP16) and their config rows (module, layer, size)."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    np.save(folder / "model.lora_weights.npy", rng.standard_normal((1, 2, 16)).astype(np.float16))
    np.save(folder / "model.lora_config.npy", np.array([[[0, 0, 4], [1, 0, 4]]], dtype=np.int32))
    return folder


@pytest.fixture(scope="module")
def lora_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("lora")
    options = DevStackOptions(engine="synthetic", synthetic_ttft_ms=5, synthetic_itl_ms=2, lora_cache_adapters=1)
    with dev_triton(options) as triton:
        sql, chat = adapter_folder(folder / "sql", 1), adapter_folder(folder / "chat", 2)
        models_file = folder / "models.yaml"
        models_file.write_text(
            f"models:\n  - name: base\n    tokenizer: {triton.model_dir}\n    upstreams: ['{triton.grpc_url}']\n"
            # Direct mode: through the ensemble, the engine's "not found in cache" error sometimes reaches the
            # client as an empty final response instead (Triton's ensemble; see the README's LoRA notes).
            "    triton_model: tensorrt_llm\n"
            f"    lora_adapters:\n      - {{name: base-sql, task_id: 7, folder: {sql}}}\n"
            f"      - {{name: base-chat, task_id: 9, folder: {chat}}}\n"
        )
        gateway = start_gateway(None, folder, models_file=models_file)
        yield gateway
        stop_gateway(gateway)


def complete(client: openai.OpenAI, model: str) -> str:
    reply = client.completions.create(
        model=model, prompt="Hello", max_tokens=8, temperature=0, extra_body={"ignore_eos": True}
    )
    return reply.choices[0].text


def test_each_adapter_is_a_model_with_its_own_text(lora_gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=lora_gateway.v1, api_key="unused")
    assert sorted(m.id for m in client.models.list()) == ["base", "base-chat", "base-sql"]
    texts = {model: complete(client, model) for model in ("base", "base-sql", "base-chat")}
    assert len(set(texts.values())) == 3, texts
    assert complete(client, "base-sql") == texts["base-sql"]  # the second time without weights: still the adapter


def test_an_evicted_adapter_is_sent_again(lora_gateway: GatewayProcess) -> None:
    """The engine holds one adapter: alternating evicts each in turn, and the gateway resends its weights."""
    client = openai.OpenAI(base_url=lora_gateway.v1, api_key="unused")
    first = {model: complete(client, model) for model in ("base-sql", "base-chat")}
    for _ in range(3):
        for model in ("base-sql", "base-chat"):
            assert complete(client, model) == first[model]
