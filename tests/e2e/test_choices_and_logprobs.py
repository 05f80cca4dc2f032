"""n choices and logprobs through the real Triton, in all three upstream modes, with real clients.

Log-probabilities are checked against the dev model itself: the same prompt ids run through the same
transformers model in this process, greedily, give the values every mode must return.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import openai
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gateway.devstack import TritonServer
from tests.e2e.conftest import GatewayProcess

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "Tell me about the sea"}]
MODES = ["ensemble", "bls", "direct"]
IGNORE_EOS = {"ignore_eos": True}
TOLERANCE = 2e-3


class Reference:
    """The dev model in this process: greedy continuations and their log-softmax values."""

    def __init__(self, server: TritonServer) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(str(server.model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(str(server.model_dir), dtype=torch.float32).eval()

    def chat_prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)

    @torch.inference_mode()
    def greedy(self, ids: list[int], count: int) -> tuple[list[int], list[torch.Tensor]]:
        """The next `count` greedy ids and the log-softmax row each was picked from."""
        ids = list(ids)
        chosen, rows = [], []
        for _ in range(count):
            logits = self.model(torch.tensor([ids])).logits[0, -1].float()
            row = torch.log_softmax(logits, dim=-1)
            token = int(torch.argmax(row))
            chosen.append(token)
            rows.append(row)
            ids.append(token)
        return chosen, rows

    @torch.inference_mode()
    def prompt_rows(self, ids: list[int]) -> torch.Tensor:
        """Log-softmax rows at every prompt position."""
        return torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), dim=-1)


@pytest.fixture(scope="module")
def reference(hf_triton: TritonServer) -> Reference:
    return Reference(hf_triton)


def sdk(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=120)


def engine_calls(triton: TritonServer) -> float:
    """Requests the tensorrt_llm model has completed (Triton's own counter)."""
    text = httpx.get(triton.metrics_url, timeout=5).text
    match = re.search(r'^nv_inference_request_success\{model="tensorrt_llm",version="1"\} (\S+)$', text, re.M)
    assert match, "nv_inference_request_success for tensorrt_llm missing"
    return float(match.group(1))


@pytest.mark.parametrize("mode", MODES)
def test_n_choices_non_streamed(mode_gateways: dict[str, GatewayProcess], hf_triton: TritonServer, mode: str) -> None:
    gateway = mode_gateways[mode]
    client = sdk(gateway)
    single = client.chat.completions.create(model=gateway.model, messages=MESSAGES, max_tokens=5, extra_body=IGNORE_EOS)
    before = engine_calls(hf_triton)
    reply = client.chat.completions.create(
        model=gateway.model, messages=MESSAGES, n=3, max_tokens=5, seed=11, temperature=1.0, extra_body=IGNORE_EOS
    )
    calls = engine_calls(hf_triton) - before
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" and c.message.content for c in reply.choices)
    assert len({c.message.content for c in reply.choices}) > 1  # sampled choices differ
    assert reply.usage is not None and single.usage is not None
    assert reply.usage.prompt_tokens == single.usage.prompt_tokens  # the prompt counts once
    assert reply.usage.completion_tokens == 15
    # One upstream call returns the three sequences where the model can (num_return_sequences); our BLS
    # model is treated like NVIDIA's, which ignores it, so it gets one call per choice.
    assert calls == (3 if mode == "bls" else 1)


@pytest.mark.parametrize("mode", MODES)
async def test_n_choices_streamed_with_the_async_sdk(mode_gateways: dict[str, GatewayProcess], mode: str) -> None:
    gateway = mode_gateways[mode]
    client = openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=120)
    stream = await client.chat.completions.create(
        model=gateway.model, messages=MESSAGES, n=3, max_tokens=6, stream=True, seed=5, temperature=1.0,
        stream_options={"include_usage": True}, extra_body=IGNORE_EOS,
    )  # fmt: skip
    texts: dict[int, str] = {0: "", 1: "", 2: ""}
    finishes: dict[int, list[str]] = {0: [], 1: [], 2: []}
    roles: list[int] = []
    usage = None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.index)
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index].append(choice.finish_reason)
    assert sorted(roles) == [0, 1, 2]
    assert finishes == {0: ["length"], 1: ["length"], 2: ["length"]}
    assert all(texts.values())
    assert usage is not None and usage.completion_tokens == 18 and usage.prompt_tokens > 0
    await client.close()


@pytest.mark.parametrize("mode", MODES)
def test_greedy_choices_are_the_same_text(mode_gateways: dict[str, GatewayProcess], mode: str) -> None:
    gateway = mode_gateways[mode]
    reply = sdk(gateway).completions.create(model=gateway.model, prompt=["Once", "Twice"], n=2, max_tokens=6,
                                            temperature=0)  # fmt: skip
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]  # prompt p's choice i is p * n + i
    assert reply.choices[0].text == reply.choices[1].text and reply.choices[2].text == reply.choices[3].text
    assert reply.choices[0].text != reply.choices[2].text


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stream", [False, True])
def test_chat_logprobs_are_the_models_own(
    mode_gateways: dict[str, GatewayProcess], reference: Reference, mode: str, stream: bool
) -> None:
    gateway = mode_gateways[mode]
    body: dict[str, Any] = {"model": gateway.model, "messages": MESSAGES, "max_tokens": 6, "temperature": 0,
                            "logprobs": True, "stream": stream}  # fmt: skip
    content, items = chat_logprobs(gateway, body)
    assert 0 < len(items) <= 6
    expected_ids, rows = reference.greedy(reference.chat_prompt_ids(MESSAGES), len(items))
    for item, token, row in zip(items, expected_ids, rows, strict=True):
        assert item["logprob"] == pytest.approx(float(row[token]), abs=TOLERANCE)
        assert item["top_logprobs"] == []
    if mode != "ensemble":  # exact text modes: the tokens' bytes are the content
        assert b"".join(bytes(item["bytes"]) for item in items) == content.encode()
    if mode == "direct":
        assert [item["token"] for item in items] == [reference.tokenizer.decode([t]) for t in expected_ids]


def chat_logprobs(gateway: GatewayProcess, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(content, logprobs.content items) of a chat completion, streamed or not, through the SDK."""
    client = sdk(gateway)
    extra = {k: body[k] for k in ("top_logprobs",) if k in body}
    kwargs = dict(model=body["model"], messages=body["messages"], max_tokens=body["max_tokens"], temperature=0,
                  logprobs=True, **extra)  # fmt: skip
    if not body["stream"]:
        reply = client.chat.completions.create(**kwargs)
        choice = reply.choices[0]
        assert choice.logprobs is not None and choice.logprobs.content is not None
        return choice.message.content or "", [item.model_dump() for item in choice.logprobs.content]
    content, items = "", []
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            if choice.logprobs is not None and choice.logprobs.content:
                items += [item.model_dump() for item in choice.logprobs.content]
    return content, items


@pytest.mark.parametrize("stream", [False, True])
def test_top_logprobs_from_the_engines_logits(
    mode_gateways: dict[str, GatewayProcess], reference: Reference, stream: bool
) -> None:
    gateway = mode_gateways["direct"]
    body = {"model": gateway.model, "messages": MESSAGES, "max_tokens": 4, "logprobs": True, "top_logprobs": 3,
            "stream": stream}  # fmt: skip
    _, items = chat_logprobs(gateway, body)
    expected_ids, rows = reference.greedy(reference.chat_prompt_ids(MESSAGES), len(items))
    for item, token, row in zip(items, expected_ids, rows, strict=True):
        top = item["top_logprobs"]
        assert len(top) == 3 and top[0]["token"] == item["token"]  # greedy: the chosen token is the likeliest
        best = torch.topk(row, 3)
        assert [t["logprob"] for t in top] == pytest.approx(best.values.tolist(), abs=TOLERANCE)
        assert [t["token"] for t in top] == [reference.tokenizer.decode([int(i)]) for i in best.indices]
        assert item["logprob"] == pytest.approx(float(row[token]), abs=TOLERANCE)


def test_completion_echo_with_prompt_logprobs(mode_gateways: dict[str, GatewayProcess], reference: Reference) -> None:
    gateway = mode_gateways["direct"]
    prompt = "The sea is wide and"
    reply = httpx.post(f"{gateway.v1}/completions", json={"model": gateway.model, "prompt": prompt, "max_tokens": 3,
                       "temperature": 0, "echo": True, "logprobs": 2}, timeout=120).json()  # fmt: skip
    choice = reply["choices"][0]
    assert choice["text"].startswith(prompt)
    logprobs = choice["logprobs"]
    prompt_ids = reference.tokenizer.encode(prompt, add_special_tokens=False)
    rows = reference.prompt_rows(prompt_ids)
    assert logprobs["token_logprobs"][0] is None  # nothing comes before the first token
    for position in range(1, len(prompt_ids)):
        expected = float(rows[position - 1][prompt_ids[position]])
        assert logprobs["token_logprobs"][position] == pytest.approx(expected, abs=TOLERANCE)
    assert len(logprobs["tokens"]) == len(prompt_ids) + 3
    assert all(2 <= len(top) <= 3 for top in logprobs["top_logprobs"][1:])  # the top 2 and the chosen token
    assert logprobs["text_offset"][0] == 0 and logprobs["text_offset"][len(prompt_ids)] == len(prompt)


@pytest.mark.parametrize("mode", ["ensemble", "bls"])
def test_what_needs_logits_is_refused_where_there_are_none(mode_gateways: dict[str, GatewayProcess], mode: str) -> None:
    gateway = mode_gateways[mode]
    chat = {"model": gateway.model, "messages": MESSAGES, "logprobs": True, "top_logprobs": 2}
    response = httpx.post(f"{gateway.v1}/chat/completions", json=chat, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"] == "top_logprobs"
    assert "gather_generation_logits" in response.json()["error"]["message"]
    echo = {"model": gateway.model, "prompt": "Hi", "echo": True, "logprobs": 0}
    response = httpx.post(f"{gateway.v1}/completions", json=echo, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"] == "echo"


@pytest.mark.parametrize("mode", MODES)
def test_completion_logprobs_streamed_match_non_streamed(mode_gateways: dict[str, GatewayProcess], mode: str) -> None:
    gateway = mode_gateways[mode]
    body = {"model": gateway.model, "prompt": "Waves", "max_tokens": 5, "temperature": 0, "logprobs": 0}
    whole = httpx.post(f"{gateway.v1}/completions", json=body, timeout=60).json()["choices"][0]["logprobs"]
    tokens, values = [], []
    with httpx.stream("POST", f"{gateway.v1}/completions", json=body | {"stream": True}, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                import json

                for choice in json.loads(line[6:])["choices"]:
                    if choice["logprobs"]:
                        tokens += choice["logprobs"]["tokens"]
                        values += choice["logprobs"]["token_logprobs"]
    assert values == pytest.approx(whole["token_logprobs"], abs=1e-6) and len(values) == 5
    if mode != "ensemble":
        assert tokens == whole["tokens"]


def test_litellm_parses_n_and_logprobs(mode_gateways: dict[str, GatewayProcess]) -> None:
    litellm = pytest.importorskip("litellm")
    gateway = mode_gateways["direct"]
    reply = litellm.completion(model=f"openai/{gateway.model}", api_base=gateway.v1, api_key="unused",
                               messages=MESSAGES, n=2, max_tokens=4, temperature=0, logprobs=True)  # fmt: skip
    assert len(reply.choices) == 2 and reply.choices[0].message.content == reply.choices[1].message.content
    assert reply.choices[0].logprobs is not None


async def test_concurrent_n_requests_keep_their_choices_apart(mode_gateways: dict[str, GatewayProcess]) -> None:
    gateway = mode_gateways["ensemble"]
    client = openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=120)
    prompts = [f"Story number {i}" for i in range(4)]
    greedy = await asyncio.gather(*(client.completions.create(model=gateway.model, prompt=p, max_tokens=5,
                                                              temperature=0) for p in prompts))  # fmt: skip
    many = await asyncio.gather(*(client.completions.create(model=gateway.model, prompt=p, n=3, max_tokens=5,
                                                            temperature=0) for p in prompts))  # fmt: skip
    for one, three in zip(greedy, many, strict=True):
        assert [c.text for c in three.choices] == [one.choices[0].text] * 3
    await client.close()
