"""The models file: what a good one builds, and that a bad one ends `serve` with status 2 naming entry and field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.app import build_registry, create_app
from gateway.config import Settings, export_to_environment
from gateway.devstack.dev_model import ensure_dev_model
from gateway.engine.pool import UpstreamPool
from gateway.errors import ConfigurationError
from gateway.models_file import ModelsFile

GOOD = """
models:
  - name: llama
    aliases: [llama-latest]
    tokenizer: {tokenizer}
    upstreams: ["10.0.0.1:8001", "10.0.0.2:8001", "dns:///triton-llama.ns.svc:8001"]
    default_max_tokens: 64
    max_tokens_limit: 512
    routing: {{policy: prefix_affinity, block_size: 32}}
  - name: small
    tokenizer: {tokenizer}
    chat_template: template.jinja
    triton_model: tensorrt_llm
    upstreams: ["10.0.0.3:8001"]
    max_prompt_tokens: 100
health: {{eject_after_failures: 5}}
"""


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    (tmp_path / "template.jinja").write_text("{% for m in messages %}{{ m.content }}\n{% endfor %}")
    path = tmp_path / "models.yaml"
    path.write_text(GOOD.format(tokenizer=ensure_dev_model()))
    return path


def test_a_good_file_builds_one_pool_per_model(good_file: Path) -> None:
    registry = build_registry(Settings(models_file=good_file, routing="round_robin"))
    llama, small = registry.all()
    assert registry.get("llama-latest") is llama
    assert isinstance(llama.engine, UpstreamPool) and isinstance(small.engine, UpstreamPool)
    assert llama.engine.config.policy == "prefix_affinity" and llama.engine.config.block_size == 32
    assert small.engine.config.policy == "round_robin"  # the command line's default
    assert small.engine.config.block_size == 64 and small.engine.config.ejection.failures == 5
    assert (llama.default_max_tokens, llama.max_tokens_limit, small.max_prompt_tokens) == (64, 512, 100)
    assert small.chat_template.render([{"role": "user", "content": "hi"}]) == "hi\n"  # relative to the file
    assert [name for name, _ in registry.names()] == ["llama", "small", "llama-latest"]


async def test_v1_models_lists_every_name_and_misspelt_ones_are_404(good_file: Path) -> None:
    app = create_app(build_registry(Settings(models_file=good_file)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
        listed = (await http.get("/v1/models")).json()
        assert [m["id"] for m in listed["data"]] == ["llama", "small", "llama-latest"]
        assert (await http.get("/v1/models/llama-latest")).json()["id"] == "llama-latest"
        missing = await http.post(
            "/v1/chat/completions", json={"model": "lama", "messages": [{"role": "user", "content": "x"}]}
        )
        assert missing.status_code == 404
        assert missing.json()["error"]["message"].startswith("The model 'lama' does not exist")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("upstreams: []", "models[1] ('bad'), field 'upstreams': List should have at least 1 item"),
        ("upstreams: [triton]", "models[1] ('bad'), field 'upstreams': 'triton' is not host:port"),
        (
            "upstreams: [a:1]\n    routing: {policy: fastest}",
            "models[1] ('bad'), field 'routing.policy': Input should be",
        ),
        ("upstreams: [a:1]\n    max_token_limit: 5", "models[1] ('bad'), field 'max_token_limit': Extra inputs"),
        ("upstreams: [a:1]\n    default_max_tokens: 0", "field 'default_max_tokens': Input should be greater"),
        ("upstreams: [a:1]\n    aliases: [good]", "'good' is also a name of models[0]"),
    ],
)
def test_a_bad_entry_names_entry_and_field(tmp_path: Path, entry: str, expected: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        f"models:\n  - {{name: good, tokenizer: t, upstreams: [a:1]}}\n  - name: bad\n    tokenizer: t\n    {entry}\n"
    )
    with pytest.raises(ConfigurationError, match=r"^models file .*models\.yaml: ") as raised:
        ModelsFile.load(path)
    assert expected in str(raised.value)


def test_a_missing_tokenizer_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - {name: m, tokenizer: nowhere, upstreams: ['a:1']}\n")
    with pytest.raises(ConfigurationError, match=r"^models\[0\] \('m'\), field 'tokenizer': .*nowhere"):
        build_registry(Settings(models_file=path))


def test_the_single_model_flags_are_a_one_entry_file() -> None:
    settings = Settings(tokenizer=ensure_dev_model(), served_model_name="x", triton_url="a:1,dns:///b:2")
    (entry,) = ModelsFile.from_settings(settings).models
    assert entry.name == "x" and entry.upstreams == ["a:1", "dns:///b:2"]
    with pytest.raises(ConfigurationError, match=r"^--triton-url: 'nope' is not host:port"):
        ModelsFile.from_settings(settings.model_copy(update={"triton_url": "nope"}))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_bad_models_file_ends_serve_with_status_2(tmp_path: Path, workers: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - name: m\n    tokenizer: t\n    upstreams: ['a:1']\n    max_tokens: 5\n")
    command = [sys.executable, "-m", "gateway", "serve", "--workers", workers, "--models-file", str(path)]
    done = subprocess.run([*command, "--port", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "models[0] ('m'), field 'max_tokens': Extra inputs are not permitted" in done.stderr
    assert "Traceback" not in done.stderr


def test_workers_rebuild_the_same_models_from_the_environment(good_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    parent = Settings(models_file=good_file, routing="power_of_two", session_from_user=True)
    for name in parent.model_dump(exclude_none=True):
        monkeypatch.setenv(f"GATEWAY_{name.upper()}", "")  # so that the test's end restores the environment
    export_to_environment(parent)
    worker = Settings()
    assert worker == parent
    assert [m.name for m in build_registry(worker).all()] == ["llama", "small"]


def test_lora_adapters_are_model_ids_and_a_bad_folder_names_its_field(tmp_path: Path) -> None:
    import numpy as np

    adapter = tmp_path / "sql"
    adapter.mkdir()
    np.save(adapter / "model.lora_weights.npy", np.zeros((1, 2, 8), np.float16))
    np.save(adapter / "model.lora_config.npy", np.zeros((1, 2, 3), np.int32))
    path = tmp_path / "models.yaml"
    entry = f"  - name: m\n    tokenizer: {ensure_dev_model()}\n    upstreams: ['a:1']\n    lora_adapters:\n"
    path.write_text(f"models:\n{entry}      - {{name: m-sql, task_id: 3, folder: sql}}\n")
    registry = build_registry(Settings(models_file=path))
    assert [name for name, _ in registry.names()] == ["m", "m-sql"]
    assert registry.get("m-sql").chat_template is registry.get("m").chat_template
    path.write_text(f"models:\n{entry}      - {{name: m-sql, task_id: 3, folder: nowhere}}\n")
    with pytest.raises(
        ConfigurationError, match=r"^models\[0\] \('m'\), field 'lora_adapters\.0\.folder': cannot read"
    ):
        build_registry(Settings(models_file=path))


def test_parsers_are_per_entry_and_an_unknown_one_names_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    entry = f"  - name: m\n    tokenizer: {ensure_dev_model()}\n    upstreams: ['a:1']\n"
    path.write_text(f"models:\n{entry}    tool_call_parser: hermes\n    reasoning_parser: none\n")
    (model,) = build_registry(Settings(models_file=path)).all()
    assert (model.tool_parser, model.reasoning_parser) == ("hermes", None)
    path.write_text(f"models:\n{entry}    tool_call_parser: hermez\n")
    with pytest.raises(ConfigurationError, match=r"^models\[0\] \('m'\), field 'tool_call_parser': 'hermez'"):
        build_registry(Settings(models_file=path))
