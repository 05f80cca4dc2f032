"""A normal OpenAI request through the gateway drives the scripted engine, in every upstream mode.

Qwen's `<think>` and `<tool_call>` are added tokens that are not special, so NVIDIA's postprocessing keeps them
even with `skip_special_tokens`: the client sees the script exactly, streamed or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.devstack import DevStackOptions, TritonServer, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

SCRIPT = (
    '<think>\nLook it up.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    "</tool_call>"
)
MODES = ("ensemble", "tensorrt_llm_bls", "tensorrt_llm")


@pytest.fixture(scope="module")
def qwen_scripted() -> Iterator[TritonServer]:
    with dev_triton(DevStackOptions(engine="scripted", family="qwen", synthetic_itl_ms=1.0)) as server:
        yield server


@pytest.fixture(scope="module", params=MODES)
def gateway(
    request: pytest.FixtureRequest, qwen_scripted: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    log_dir: Path = tmp_path_factory.mktemp(f"gateway-{request.param}")
    # No reasoning parser: these tests check that the script's text arrives as it is (test_agents.py parses it).
    process = start_gateway(qwen_scripted, log_dir, "--triton-model", request.param, "--reasoning-parser", "none")
    yield process
    stop_gateway(process)


def _body(stream: bool) -> dict:
    content = f"What is the weather in Paris? <<script>>{SCRIPT}<</script>>"
    return {"model": "trtllm-dev", "messages": [{"role": "user", "content": content}], "stream": stream}


def test_the_reply_is_the_script(gateway: GatewayProcess) -> None:
    reply = httpx.post(f"{gateway.v1}/chat/completions", json=_body(False), timeout=30)
    assert reply.status_code == 200, reply.text
    choice = reply.json()["choices"][0]
    assert choice["message"]["content"] == SCRIPT
    assert choice["finish_reason"] == "stop"


def test_the_streamed_reply_is_the_script(gateway: GatewayProcess) -> None:
    text = ""
    with httpx.stream("POST", f"{gateway.v1}/chat/completions", json=_body(True), timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[len("data: ") :])["choices"]:
                    text += choice["delta"].get("content") or ""
    assert text == SCRIPT


MISTRAL_SCRIPT = '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abcDEF123"}]'


@pytest.mark.parametrize("skip_special_tokens", [True, False])
def test_the_ensemble_drops_special_markers_unless_told_not_to(
    skip_special_tokens: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Mistral's [TOOL_CALLS] is a special token: NVIDIA's postprocessing skips it when asked to."""
    options = DevStackOptions(
        engine="scripted", family="mistral", synthetic_itl_ms=1.0, skip_special_tokens=skip_special_tokens
    )
    with dev_triton(options) as server:
        process = start_gateway(server, tmp_path_factory.mktemp("gateway-mistral"))
        try:
            content = f"Weather? <<script>>{MISTRAL_SCRIPT}<</script>>"
            body = {"model": "trtllm-dev", "messages": [{"role": "user", "content": content}]}
            reply = httpx.post(f"{process.v1}/chat/completions", json=body, timeout=30)
        finally:
            stop_gateway(process)
    assert reply.status_code == 200, reply.text
    text = reply.json()["choices"][0]["message"]["content"]
    # Without the marker the text starts with "▁[", whose space sentencepiece's decoder strips.
    assert text == (MISTRAL_SCRIPT.removeprefix("[TOOL_CALLS] ") if skip_special_tokens else MISTRAL_SCRIPT)
