"""The gateway against the real Triton (dev model, hf engine), driven by the official openai SDK and litellm."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.core.tokens import load_tokenizer
from tests.e2e.conftest import GatewayProcess

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Count to ten."}]
GREEDY: dict[str, Any] = {"temperature": 0.0, "seed": 7}
# The random dev model's greedy text is one repeated token; sampling with a seed gives varied, repeatable text.
SAMPLED: dict[str, Any] = {"temperature": 1.0, "seed": 11}


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def aclient(gateway: GatewayProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def tokenizer(hf_triton: Any) -> Any:
    return load_tokenizer(hf_triton.model_dir)


def rendered_prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer.encode(prompt, add_special_tokens=False))


def test_chat_non_stream_shape_usage_and_length_finish(client: openai.OpenAI, gateway: GatewayProcess, tokenizer: Any):
    completion = client.chat.completions.create(model=gateway.model, messages=MESSAGES, max_tokens=12, **GREEDY)
    ChatCompletion.model_validate(completion.model_dump())
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == gateway.model and completion.system_fingerprint
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    # The random dev model practically never emits its end token in 12 steps, so max_tokens ends it.
    assert choice.finish_reason == "length"
    assert completion.usage.prompt_tokens == rendered_prompt_tokens(tokenizer, MESSAGES)
    assert completion.usage.completion_tokens == 12
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 12


def test_stream_concatenation_equals_non_stream_text(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    full = client.chat.completions.create(model=gateway.model, messages=MESSAGES, max_tokens=16, **GREEDY)
    stream = client.chat.completions.create(
        model=gateway.model,
        messages=MESSAGES,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
        **GREEDY,
    )
    chunks = list(stream)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.model_dump())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 16
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
    # The ensemble decodes each streamed token on its own, so only byte-complete text can be compared.
    if "\ufffd" not in text and "\ufffd" not in (full.choices[0].message.content or ""):
        assert text == full.choices[0].message.content


def test_stop_string_trimmed_and_finish_stop(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    base = client.chat.completions.create(model=gateway.model, messages=MESSAGES, max_tokens=24, **SAMPLED)
    text = base.choices[0].message.content or ""
    clean = text.replace("\ufffd", "")
    assert len(clean) > 8, text
    stop = clean[len(clean) // 2 : len(clean) // 2 + 3]
    expected = text[: text.index(stop)]
    for stream in (False, True):
        if stream:
            chunks = client.chat.completions.create(
                model=gateway.model, messages=MESSAGES, max_tokens=24, stop=[stop], stream=True, **SAMPLED
            )
            parts, finish = [], None
            for chunk in chunks:
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
                    finish = chunk.choices[0].finish_reason or finish
            got = "".join(parts)
        else:
            result = client.chat.completions.create(
                model=gateway.model, messages=MESSAGES, max_tokens=24, stop=stop, **SAMPLED
            )
            got, finish = result.choices[0].message.content, result.choices[0].finish_reason
        assert got == expected, (stream, stop, text)
        assert finish == "stop"


def test_completions_with_list_of_prompts(client: openai.OpenAI, gateway: GatewayProcess, tokenizer: Any) -> None:
    prompts = ["Once upon a time", "def main():"]
    result = client.completions.create(model=gateway.model, prompt=prompts, max_tokens=5, **GREEDY)
    Completion.model_validate(result.model_dump())
    assert [c.index for c in result.choices] == [0, 1]
    assert all(c.finish_reason == "length" for c in result.choices)
    expected_prompt_tokens = sum(len(tokenizer.encode(p, add_special_tokens=False)) for p in prompts)
    assert result.usage.prompt_tokens == expected_prompt_tokens
    assert result.usage.completion_tokens == 10


def test_seed_determinism_and_sampling_fields(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    def run(seed: int) -> str:
        result = client.chat.completions.create(
            model=gateway.model,
            messages=MESSAGES,
            max_tokens=10,
            temperature=1.0,
            top_p=0.9,
            seed=seed,
            presence_penalty=0.5,
            frequency_penalty=0.5,
            extra_body={"top_k": 50, "repetition_penalty": 1.1, "min_tokens": 2},
        )
        return result.choices[0].message.content or ""

    assert run(1234) == run(1234)
    assert run(1234) != run(4321)


async def test_async_client_concurrent_streams(aclient: openai.AsyncOpenAI, gateway: GatewayProcess) -> None:
    async def one(index: int) -> tuple[str, str | None]:
        stream = await aclient.chat.completions.create(
            model=gateway.model,
            messages=[{"role": "user", "content": f"Request {index}"}],
            max_tokens=6,
            stream=True,
            **GREEDY,
        )
        parts, finish = [], None
        async for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
        return "".join(parts), finish

    results = await asyncio.gather(*(one(i) for i in range(8)))
    assert all(finish == "length" for _, finish in results)


def test_errors_through_the_sdk(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert not_found.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=gateway.model, messages=MESSAGES, n=9)  # above --max-n
    assert bad.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as bad_logprobs:  # the ensemble has no generation logits
        client.chat.completions.create(model=gateway.model, messages=MESSAGES, logprobs=True, top_logprobs=3)
    assert bad_logprobs.value.body["param"] == "top_logprobs"


def test_models_endpoint_via_sdk(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    assert [m.id for m in client.models.list().data] == [gateway.model]
    assert client.models.retrieve(gateway.model).id == gateway.model


def test_litellm_as_client(gateway: GatewayProcess) -> None:
    litellm = pytest.importorskip("litellm")
    # Greedy: the random dev model may sample its end-of-sequence token within 5 tokens, its greedy text does not.
    target = {"model": f"openai/{gateway.model}", "api_base": gateway.v1, "api_key": "unused", **GREEDY}
    response = litellm.completion(messages=MESSAGES, max_tokens=5, **target)
    assert response.choices[0].message.content
    assert (response.usage.completion_tokens, response.choices[0].finish_reason) == (5, "length")
    streamed = litellm.completion(messages=MESSAGES, max_tokens=5, stream=True, **target)
    parts = [chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices]
    assert "".join(parts)


def test_bls_mode_serves_the_same_api(bls_gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=bls_gateway.v1, api_key="unused", max_retries=0, timeout=60)
    result = client.chat.completions.create(model=bls_gateway.model, messages=MESSAGES, max_tokens=8, **GREEDY)
    assert result.choices[0].finish_reason == "length"
    assert result.usage.completion_tokens == 8
