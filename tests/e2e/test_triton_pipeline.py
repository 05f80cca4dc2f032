"""The production pre/post/ensemble/BLS models (triton_repo/trtllm, linked from triton_repo/dev) on the real
tritonserver, in front of the dev tensorrt_llm stand-in.

Expected texts come from the engine itself: the same prompt and seed sent straight to `tensorrt_llm` give the
token ids, and the tokenizer turns them into what each pipeline must return.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from transformers import AutoTokenizer

from gateway.devstack import TritonServer

pytestmark = pytest.mark.e2e

PROMPT = "Hello wörld, 你好 🙂. Tell me a story"
REPLACEMENT = "\ufffd"
OUTPUTS = ("text_output", "num_input_tokens", "num_output_tokens", "batch_index")
TIMEOUT_S = 30.0


@dataclass
class Reply:
    """Everything one streamed request returned."""

    chunks: list[dict[str, np.ndarray]] = field(default_factory=list)
    error: str | None = None
    finals: int = 0

    def texts(self, item: int | None = None) -> list[str]:
        """text_output of each data response (of one batch item when `item` is given)."""
        return [
            c["text_output"].reshape(-1)[0].decode("utf-8")
            for c in self.chunks
            if item is None or int(c.get("batch_index", np.zeros(1)).reshape(-1)[0]) == item
        ]

    def values(self, name: str) -> list[int]:
        """An integer output of each data response."""
        return [int(c[name].reshape(-1)[0]) for c in self.chunks]


def tensor(name: str, value: np.ndarray) -> grpcclient.InferInput:
    """A gRPC input from a numpy array."""
    dtype = {"O": "BYTES", "b": "BOOL"}.get(value.dtype.kind) or grpcclient.np_to_triton_dtype(value.dtype)
    result = grpcclient.InferInput(name, list(value.shape), dtype)
    result.set_data_from_numpy(value)
    return result


def generation_inputs(prompt: str | list[str], max_tokens: int, stream: bool, **extra: Any) -> dict[str, np.ndarray]:
    """Ensemble/BLS inputs for a batch of prompts; extra scalars are given per item, lists as [batch, N]."""
    prompts = [prompt] if isinstance(prompt, str) else prompt
    batch = len(prompts)
    inputs = {
        "text_input": np.array([[p.encode()] for p in prompts], dtype=object),
        "max_tokens": np.full((batch, 1), max_tokens, np.int32),
        "stream": np.full((batch, 1), stream),
        "exclude_input_in_output": np.full((batch, 1), True),
        "return_num_input_tokens": np.full((batch, 1), True),
        "return_num_output_tokens": np.full((batch, 1), True),
    }
    for name, value in extra.items():
        if isinstance(value, list):
            inputs[name] = np.array([[w.encode() for w in value]] * batch, dtype=object)
        else:
            inputs[name] = np.full((batch, 1), value, np.asarray(value).dtype)
    return inputs


def sampling(seed: int) -> dict[str, Any]:
    """Seeded sampling (without top_k/top_p the dev engine is greedy)."""
    return {"top_p": np.float32(1.0), "temperature": np.float32(1.0), "seed": np.uint64(seed)}


class Pipeline:
    """Synchronous gRPC streaming calls to one tritonserver, one stream per request."""

    def __init__(self, server: TritonServer) -> None:
        self.server = server
        self.tokenizer = AutoTokenizer.from_pretrained(str(server.model_dir))

    def call(
        self, model: str, inputs: dict[str, np.ndarray], *, request_id: str = "", cancel_after: int | None = None
    ) -> Reply:
        """Send one request and collect its responses until the final one (or cancel after N responses)."""
        answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
        client = grpcclient.InferenceServerClient(self.server.grpc_url)
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        names = OUTPUTS if model != "tensorrt_llm" else ("output_ids", "sequence_length")
        client.async_stream_infer(
            model,
            [tensor(n, v) for n, v in inputs.items()],
            request_id=request_id or uuid.uuid4().hex,
            outputs=[grpcclient.InferRequestedOutput(n) for n in names],
            enable_empty_final_response=True,
        )
        reply = Reply()
        try:
            while True:
                result, error = answers.get(timeout=TIMEOUT_S)
                if error is not None:
                    reply.error = str(error)
                    return reply
                response = result.get_response()
                if response.outputs:
                    reply.chunks.append({o.name: result.as_numpy(o.name) for o in response.outputs})
                if response.parameters["triton_final_response"].bool_param:
                    reply.finals += 1
                    return reply
                if cancel_after is not None and len(reply.chunks) >= cancel_after:
                    client.stop_stream(cancel_requests=True)
                    return reply
        finally:
            client.stop_stream()
            client.close()

    def engine_ids(self, prompt: str, max_tokens: int, **params: Any) -> list[int]:
        """What tensorrt_llm generates for this prompt (no prompt echo), called directly."""
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        renamed = {"top_p": "runtime_top_p", "top_k": "runtime_top_k"}
        inputs = {
            "input_ids": np.array([ids], np.int32),
            "input_lengths": np.array([[len(ids)]], np.int32),
            "request_output_len": np.array([[max_tokens]], np.int32),
            "end_id": np.array([[self.tokenizer.eos_token_id]], np.int32),
            "pad_id": np.array([[self.tokenizer.pad_token_id]], np.int32),
            "exclude_input_in_output": np.array([[True]]),
            **{renamed.get(k, k): np.full((1, 1), v, np.asarray(v).dtype) for k, v in params.items()},
        }
        reply = self.call("tensorrt_llm", inputs)
        assert reply.error is None, reply.error
        return [int(i) for c in reply.chunks for i in c["output_ids"].reshape(-1)[: int(c["sequence_length"][0, 0])]]

    def decode(self, ids: list[int]) -> str:
        """What postprocessing makes of these ids."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def stop_engine(self, request_id: str) -> Reply:
        """A stop=true request to tensorrt_llm, as a gateway sends it."""
        inputs = {
            "input_ids": np.zeros((1, 1), np.int32),
            "input_lengths": np.zeros((1, 1), np.int32),
            "request_output_len": np.zeros((1, 1), np.int32),
            "stop": np.ones((1, 1), bool),
        }
        return self.call("tensorrt_llm", inputs, request_id=request_id)

    def metric(self, name: str) -> float:
        """A dev engine metric from Triton's /metrics."""
        text = httpx.get(self.server.metrics_url, timeout=5).text
        match = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE)
        assert match, f"{name} missing from /metrics"
        return float(match.group(1))

    def wait_idle(self, within: float) -> None:
        """Wait until the engine runs no request."""
        deadline = time.monotonic() + within
        while self.metric("dev_engine_running_requests") > 0:
            assert time.monotonic() < deadline, f"the engine still generates after {within} s"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def pipeline(hf_triton: TritonServer) -> Pipeline:
    """The pipelines on the dev stack (hf engine, accumulate_tokens true, add_special_tokens false)."""
    return Pipeline(hf_triton)


@pytest.fixture(scope="module")
def split_sample(pipeline: Pipeline) -> tuple[int, list[int]]:
    """A seed whose generation has a multi-byte character split across tokens, and its token ids."""
    for seed in range(60):
        ids = pipeline.engine_ids(PROMPT, 40, **sampling(seed))
        per_token = "".join(pipeline.decode([i]) for i in ids)
        if per_token.count(REPLACEMENT) > pipeline.decode(ids).count(REPLACEMENT):
            return seed, ids
    pytest.fail("no seed in 0..59 makes the dev model split a character across tokens")


def test_ensemble_stream_deltas_concatenate_to_the_non_stream_text(pipeline: Pipeline) -> None:
    ids = pipeline.engine_ids(PROMPT, 24)
    streamed = pipeline.call("ensemble", generation_inputs(PROMPT, 24, stream=True))
    whole = pipeline.call("ensemble", generation_inputs(PROMPT, 24, stream=False))
    assert streamed.error is None and whole.error is None
    assert len(streamed.texts()) == len(ids)
    assert "".join(streamed.texts()) == whole.texts()[0] == pipeline.decode(ids)


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
def test_non_stream_returns_the_whole_text_with_the_prompt_unless_excluded(pipeline: Pipeline, model: str) -> None:
    ids = pipeline.engine_ids(PROMPT, 12)
    excluded = pipeline.call(model, generation_inputs(PROMPT, 12, stream=False))
    echoed = pipeline.call(model, generation_inputs(PROMPT, 12, stream=False, exclude_input_in_output=False))
    assert excluded.texts() == [pipeline.decode(ids)]
    assert echoed.texts() == [PROMPT + pipeline.decode(ids)]
    assert excluded.finals == echoed.finals == 1


def test_ensemble_stream_splits_multibyte_characters_like_production(
    pipeline: Pipeline, split_sample: tuple[int, list[int]]
) -> None:
    seed, ids = split_sample
    reply = pipeline.call("ensemble", generation_inputs(PROMPT, 40, stream=True, **sampling(seed)))
    assert reply.texts() == [pipeline.decode([i]) for i in ids]  # each token decoded alone
    assert "".join(reply.texts()).count(REPLACEMENT) > pipeline.decode(ids).count(REPLACEMENT)


def test_bls_accumulate_tokens_streams_cumulative_text_without_split_characters(
    pipeline: Pipeline, split_sample: tuple[int, list[int]]
) -> None:
    seed, ids = split_sample
    reply = pipeline.call("tensorrt_llm_bls", generation_inputs(PROMPT, 40, stream=True, **sampling(seed)))
    assert reply.error is None
    assert reply.texts() == [pipeline.decode(ids[: n + 1]) for n in range(len(ids))]
    assert reply.texts()[-1] == pipeline.decode(ids)


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
@pytest.mark.parametrize("stream", [True, False])
def test_token_counts(pipeline: Pipeline, model: str, stream: bool) -> None:
    prompt_tokens = len(pipeline.tokenizer.encode(PROMPT, add_special_tokens=False))
    ids = pipeline.engine_ids(PROMPT, 20, **sampling(7))
    reply = pipeline.call(model, generation_inputs(PROMPT, 20, stream=stream, **sampling(7)))
    assert reply.error is None
    assert set(reply.values("num_input_tokens")) == {prompt_tokens}
    assert sum(reply.values("num_output_tokens")) == len(ids)
    assert len(reply.chunks) == (len(ids) if stream else 1)


def token_level_stop(pipeline: Pipeline, ids: list[int]) -> int:
    """An end index j such that the text of ids[j-2:j] tokenizes to exactly those ids and first occurs there."""
    for end in range(4, len(ids) - 4):
        pair, word = ids[end - 2 : end], pipeline.decode(ids[end - 2 : end])
        before = pipeline.decode(ids[: end - 2])
        if (
            REPLACEMENT not in word
            and pipeline.tokenizer.encode(word, add_special_tokens=False) == pair
            and all(ids[k : k + 2] != pair for k in range(end - 2))
            and pipeline.decode(ids[:end]) == before + word
            and word not in before
        ):
            return end
    pytest.fail("no stop word candidate in the generated ids")


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
@pytest.mark.parametrize("stream", [True, False])
def test_stop_word_matched_by_the_engine_ends_the_text_after_it(pipeline: Pipeline, model: str, stream: bool) -> None:
    ids = pipeline.engine_ids(PROMPT, 40, **sampling(3))
    end = token_level_stop(pipeline, ids)
    word = pipeline.decode(ids[end - 2 : end])
    reply = pipeline.call(model, generation_inputs(PROMPT, 40, stream=stream, stop_words=[word, ""], **sampling(3)))
    assert reply.error is None
    text = "".join(reply.texts()) if stream and model == "ensemble" else reply.texts()[-1]
    assert text == pipeline.decode(ids[:end])
    assert text.endswith(word)  # the stop word stays; the gateway trims it


def boundary_stop(pipeline: Pipeline, ids: list[int]) -> tuple[int, str]:
    """(k, s): s spans the end of token k-1 and the start of token k, and the engine cannot match it."""
    for k in range(4, len(ids) - 4):
        left, upto = pipeline.decode(ids[:k]), pipeline.decode(ids[: k + 1])
        word = left[-2:] + upto[len(left) : len(left) + 2]
        standalone = pipeline.tokenizer.encode(word, add_special_tokens=False)
        if (
            len(word) == 4
            and REPLACEMENT not in upto
            and upto.startswith(left)
            and upto.find(word) == len(left) - 2
            and not any(ids[i : i + len(standalone)] == standalone for i in range(len(ids)))
        ):
            return k, word
    pytest.fail("no token-boundary stop string in the generated ids")


def test_bls_matches_stop_strings_on_text_and_stops_the_engine(pipeline: Pipeline) -> None:
    ids = pipeline.engine_ids(PROMPT, 40, **sampling(5))
    k, word = boundary_stop(pipeline, ids)
    upto = pipeline.decode(ids[: k + 1])
    generated_before = pipeline.metric("dev_engine_generated_tokens_total")
    reply = pipeline.call(
        "tensorrt_llm_bls", generation_inputs(PROMPT, 1500, stream=True, stop_words=[word], **sampling(5))
    )
    pipeline.wait_idle(within=5)
    assert reply.error is None and reply.finals == 1
    assert reply.texts()[-1] == upto[: upto.find(word) + len(word)]
    assert pipeline.metric("dev_engine_generated_tokens_total") - generated_before < 200

    # The ensemble has only the engine's token-level match, which this string escapes.
    ensemble = pipeline.call("ensemble", generation_inputs(PROMPT, 40, stream=False, stop_words=[word], **sampling(5)))
    assert ensemble.texts() == [pipeline.decode(ids)]


def test_bls_client_cancel_leaves_the_engine_running_until_a_stop_request(pipeline: Pipeline) -> None:
    request_id = f"client-{uuid.uuid4().hex}"
    inputs = generation_inputs(PROMPT, 1500, stream=True)
    reply = pipeline.call("tensorrt_llm_bls", inputs, request_id=request_id, cancel_after=3)
    assert len(reply.chunks) == 3
    time.sleep(0.5)
    assert pipeline.metric("dev_engine_running_requests") == 1  # as with NVIDIA's BLS and the ensemble
    assert pipeline.stop_engine(request_id).error is None
    pipeline.wait_idle(within=5)


def test_bls_generation_stops_on_a_stop_request_with_the_client_request_id(pipeline: Pipeline) -> None:
    request_id = f"client-{uuid.uuid4().hex}"
    result: list[Reply] = []
    worker = threading.Thread(
        target=lambda: result.append(
            pipeline.call("tensorrt_llm_bls", generation_inputs(PROMPT, 1500, stream=True), request_id=request_id)
        )
    )
    worker.start()
    time.sleep(0.5)
    assert pipeline.stop_engine(request_id).error is None
    worker.join(TIMEOUT_S)
    assert result and result[0].error is None and result[0].finals == 1
    assert 0 < len(result[0].chunks) < 1500
    pipeline.wait_idle(within=5)


def test_bls_serves_a_batch_of_prompts(pipeline: Pipeline) -> None:
    prompts = [PROMPT, "Once upon a time"]
    expected = [pipeline.decode(pipeline.engine_ids(p, 10)) for p in prompts]
    reply = pipeline.call("tensorrt_llm_bls", generation_inputs(prompts, 10, stream=True))
    assert reply.error is None and reply.finals == 1
    assert [reply.texts(item)[-1] for item in range(2)] == expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"max_tokens": np.zeros((1, 1), np.int32)}, "max_tokens must be"),
        ({"image_url_input": np.array([[b"http://x"]], dtype=object)}, "image_url_input"),
    ],
)
def test_bls_errors_end_the_request_with_a_clear_message(
    pipeline: Pipeline, extra: dict[str, np.ndarray], message: str
) -> None:
    reply = pipeline.call("tensorrt_llm_bls", {**generation_inputs(PROMPT, 8, stream=True), **extra})
    assert reply.error is not None and message in reply.error and "tensorrt_llm_bls" in reply.error


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
def test_http_generate_stream_returns_the_text_over_sse(pipeline: Pipeline, model: str) -> None:
    expected = pipeline.decode(pipeline.engine_ids(PROMPT, 16))
    body = {"text_input": PROMPT, "max_tokens": 16, "stream": True, "exclude_input_in_output": True}
    url = f"{pipeline.server.http_url}/v2/models/{model}/generate_stream"
    with httpx.stream("POST", url, json=body, timeout=TIMEOUT_S) as response:
        assert response.status_code == 200
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    texts = [event["text_output"] for event in events if "text_output" in event]
    assert ("".join(texts) if model == "ensemble" else texts[-1]) == expected


def test_preprocessing_builds_word_lists_like_nvidia(pipeline: Pipeline) -> None:
    words = [["Hello", "", "wörld"], ["story", "a", ""]]
    inputs = {
        "QUERY": np.array([[b"Tell me"], [b"a story"]], dtype=object),
        "REQUEST_OUTPUT_LEN": np.array([[4], [4]], np.int32),
        "STOP_WORDS_DICT": np.array([[w.encode() for w in row] for row in words], dtype=object),
    }
    client = grpcclient.InferenceServerClient(pipeline.server.grpc_url)
    result = client.infer("preprocessing", [tensor(n, v) for n, v in inputs.items()])
    encode = [[pipeline.tokenizer.encode(w, add_special_tokens=False) for w in row if w] for row in words]
    width = max(sum(len(ids) for ids in row) for row in encode)
    stop_ids = result.as_numpy("STOP_WORDS_IDS")
    assert stop_ids.shape == (2, 2, width)
    for item, row in enumerate(encode):
        flat = [i for ids in row for i in ids]
        ends = list(np.cumsum([len(ids) for ids in row]))
        assert stop_ids[item, 0].tolist() == flat + [0] * (width - len(flat))
        assert stop_ids[item, 1].tolist() == ends + [-1] * (width - len(ends))
    assert result.as_numpy("BAD_WORDS_IDS").shape == (2, 2, 0)
    assert result.as_numpy("OUT_END_ID").tolist() == [[pipeline.tokenizer.eos_token_id]] * 2
    lengths = result.as_numpy("REQUEST_INPUT_LEN").reshape(-1).tolist()
    assert lengths == [len(pipeline.tokenizer.encode(q, add_special_tokens=False)) for q in ("Tell me", "a story")]

    multimodal = dict(inputs, IMAGE_URL=np.array([[b"http://x"], [b"http://y"]], dtype=object))
    with pytest.raises(Exception, match="this model takes no images: its preprocessing has no multimodal_model_path"):
        client.infer("preprocessing", [tensor(n, v) for n, v in multimodal.items()])
