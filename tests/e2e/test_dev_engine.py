"""The dev `tensorrt_llm` stand-in, called directly over gRPC on a real tritonserver.

Each engine gets its own server with only this model in the repository, so a broken neighbour model cannot
mask (or cause) a failure here. Requests are built as raw protobufs: tritonclient.grpc.aio drops
`enable_empty_final_response`, and these tests need to see every ending.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from tokenizers import Tokenizer
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

from gateway.devstack import (
    DevStackOptions,
    default_cache_root,
    render_model_repository,
    start_triton,
    triton_repo_root,
)
from gateway.devstack.dev_model import ensure_dev_model
from gateway.devstack.triton_server import TritonServer

pytestmark = pytest.mark.e2e

MODEL = "tensorrt_llm"
PROMPT = [17, 42, 99, 7, 256]
OUTPUTS = ["output_ids", "sequence_length", "num_input_tokens", "num_output_tokens"]
SCALAR_DTYPES = {
    "temperature": np.float32,
    "runtime_top_p": np.float32,
    "seed": np.uint64,
    **dict.fromkeys(["runtime_top_k", "min_tokens", "end_id", "beam_width", "num_return_sequences"], np.int32),
}
SAMPLING = {"runtime_top_k": 50, "temperature": 1.0}
SYNTHETIC_TTFT_MS = 200.0
SYNTHETIC_ITL_MS = 20.0
RUNNING = re.compile(r"^dev_engine_running_requests\{[^}]*\} (\S+)$", re.MULTILINE)
REQUEST_METRIC = re.compile(r'^nv_trt_llm_request_metrics\{[^}]*request_type="(\w+)"[^}]*\} (\S+)$', re.MULTILINE)


@dataclass
class Reply:
    """Everything one stream returned for one request."""

    responses: list[dict[str, np.ndarray]] = field(default_factory=list)
    finals: list[bool] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def ids(self) -> list[int]:
        """All output ids, in order (deltas concatenated when streaming)."""
        return [int(t) for r in self.responses if "output_ids" in r for t in r["output_ids"][0, 0]]

    def values(self, name: str) -> list[int]:
        """The [1, 1] value of `name` in each response that has it."""
        return [int(r[name][0, 0]) for r in self.responses if name in r]


class Engine:
    """A gRPC client for the `tensorrt_llm` model of one running server."""

    def __init__(self, server: TritonServer, model_dir: Path) -> None:
        self.server = server
        self.model_dir = model_dir

    @staticmethod
    def request(prompt: list[int], max_tokens: int, request_id: str = "", **inputs: Any) -> Any:
        """A ModelInferRequest; keyword inputs are scalars (or ready [1, ...] arrays)."""
        tensors: dict[str, np.ndarray] = {
            "input_ids": np.array([prompt], np.int32),
            "input_lengths": np.array([[len(prompt)]], np.int32),
            "request_output_len": np.array([[max_tokens]], np.int32),
        }
        for name, value in inputs.items():
            if name == "_logits":
                continue
            tensors[name] = (
                value if isinstance(value, np.ndarray) else np.array([[value]], SCALAR_DTYPES.get(name, bool))
            )
        request = service_pb2.ModelInferRequest(model_name=MODEL, id=request_id)
        for name, array in tensors.items():
            tensor = request.inputs.add(name=name, datatype=np_to_triton_dtype(array.dtype))
            tensor.shape.extend(array.shape)
            request.raw_input_contents.append(array.tobytes())
        for name in [
            *OUTPUTS,
            "batch_index",
            "sequence_index",
            "cum_log_probs",
            "output_log_probs",
            *inputs.get("_logits", ()),
        ]:
            request.outputs.add(name=name)
        request.parameters["triton_enable_empty_final_response"].bool_param = True
        return request

    async def stream(self, request: Any) -> AsyncIterator[tuple[dict[str, np.ndarray], bool, str]]:
        """Send one request on its own stream; yield (outputs, final flag, error) per response."""
        async with grpc.aio.insecure_channel(self.server.grpc_url) as channel:
            call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer()
            try:
                await call.write(request)
                while (message := await call.read()) is not grpc.aio.EOF:
                    response = message.infer_response
                    outputs = {
                        out.name: np.frombuffer(raw, triton_to_np_dtype(out.datatype)).reshape(tuple(out.shape))
                        for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)
                    }
                    yield outputs, response.parameters["triton_final_response"].bool_param, message.error_message
            finally:
                call.cancel()

    async def generate(self, prompt: list[int], max_tokens: int, request_id: str = "", **inputs: Any) -> Reply:
        """Run a request to its final response (or error)."""
        reply, start = Reply(), time.perf_counter()
        async for outputs, final, error in self.stream(self.request(prompt, max_tokens, request_id, **inputs)):
            reply.responses.append(outputs)
            reply.finals.append(final)
            reply.times.append(time.perf_counter() - start)
            if error or final:
                reply.error = error
                break
        return reply

    async def running(self) -> float:
        """The dev_engine_running_requests gauge."""
        async with httpx.AsyncClient() as client:
            text = (await client.get(self.server.metrics_url)).text
        match = RUNNING.search(text)
        assert match, "dev_engine_running_requests missing from /metrics"
        return float(match.group(1))

    async def request_metrics(self) -> dict[str, float]:
        """The real backend's `nv_trt_llm_request_metrics` gauges by request_type."""
        async with httpx.AsyncClient() as client:
            text = (await client.get(self.server.metrics_url)).text
        return {kind: float(value) for kind, value in REQUEST_METRIC.findall(text)}

    async def wait_idle(self, within: float) -> float:
        """Seconds until the running gauge reads 0; fails after `within` seconds."""
        start = time.perf_counter()
        while await self.running() != 0:
            assert time.perf_counter() - start < within, f"engine still busy after {within} s"
            await asyncio.sleep(0.02)
        return time.perf_counter() - start


def word_list(words: list[list[int]]) -> np.ndarray:
    """TensorRT-LLM's [1, 2, L] word-list tensor: flat ids, then cumulative end offsets padded with -1."""
    flat = [token for word in words for token in word]
    offsets = np.cumsum([len(word) for word in words]).tolist()
    return np.array([[flat, offsets + [-1] * (len(flat) - len(offsets))]], np.int32)


def _serve(engine: str, tmp: Path, **options: Any) -> Iterator[Engine]:
    model_dir = ensure_dev_model()
    source = tmp / "source"
    source.mkdir()
    (source / MODEL).symlink_to(triton_repo_root() / "dev" / MODEL)
    values = DevStackOptions(engine=engine, **options).placeholder_values(model_dir)  # type: ignore[arg-type]
    repository = render_model_repository(source, tmp / "repository", values)
    server = start_triton(repository, work_dir=tmp, cache_root=default_cache_root())
    try:
        yield Engine(server, model_dir)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    yield from _serve("hf", tmp_path_factory.mktemp("hf"), max_num_active=8)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    yield from _serve(
        "synthetic",
        tmp_path_factory.mktemp("synthetic"),
        max_num_active=1024,
        synthetic_ttft_ms=SYNTHETIC_TTFT_MS,
        synthetic_itl_ms=SYNTHETIC_ITL_MS,
    )


@pytest.fixture(scope="module")
def slow_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Two active slots and a 2 s time to first token: requests queue, and sit in their context phase."""
    yield from _serve(
        "synthetic",
        tmp_path_factory.mktemp("slow-start"),
        max_num_active=2,
        synthetic_ttft_ms=2000,
        synthetic_itl_ms=SYNTHETIC_ITL_MS,
    )


@pytest.fixture(params=["hf", "synthetic"])
def engine(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue(request.param)


async def test_streaming_sends_each_new_token_once_and_final_last(engine: Engine) -> None:
    counts = {"return_num_input_tokens": True, "return_num_output_tokens": True}
    stream = await engine.generate(PROMPT, 8, streaming=True, **counts)
    whole = await engine.generate(PROMPT, 8, exclude_input_in_output=True, **counts)
    assert not stream.error
    assert [r["output_ids"].shape for r in stream.responses] == [(1, 1, 1)] * 8
    assert stream.finals == [False] * 7 + [True]
    assert stream.values("sequence_length") == stream.values("num_output_tokens") == [1] * 8
    assert stream.values("num_input_tokens") == [len(PROMPT)] * 8
    assert stream.ids == whole.ids


async def test_non_streaming_returns_prompt_unless_excluded(hf: Engine) -> None:
    counts = {"return_num_input_tokens": True, "return_num_output_tokens": True}
    full = await hf.generate(PROMPT, 6, **counts)
    new = await hf.generate(PROMPT, 6, exclude_input_in_output=True, **counts)
    assert full.finals == new.finals == [True]
    assert full.ids == PROMPT + new.ids and len(new.ids) == 6
    # Like TensorRT-LLM, the counts describe the response: with the prompt echoed it is counted as output.
    assert full.values("sequence_length") == full.values("num_output_tokens") == [len(PROMPT) + 6]
    assert new.values("sequence_length") == new.values("num_output_tokens") == [6]
    assert full.values("num_input_tokens") == new.values("num_input_tokens") == [len(PROMPT)]


async def test_seed_makes_sampling_repeatable(engine: Engine) -> None:
    async def sample(**seed: int) -> list[int]:
        return (await engine.generate(PROMPT, 24, exclude_input_in_output=True, **SAMPLING, **seed)).ids

    first, again, other = await sample(seed=7), await sample(seed=7), await sample(seed=8)
    assert first == again
    assert first != other
    # TensorRT-LLM samples with seed 0 when none is given: repeatable too.
    assert await sample() == await sample() == await sample(seed=0)


async def test_greedy_is_deterministic_and_the_default_without_top_k_or_top_p(hf: Engine) -> None:
    greedy = await hf.generate(PROMPT, 16, exclude_input_in_output=True, temperature=0.0)
    assert greedy.ids == (await hf.generate(PROMPT, 16, exclude_input_in_output=True, temperature=0.0)).ids
    no_top = await hf.generate(PROMPT, 16, exclude_input_in_output=True, temperature=1.5, seed=3)
    assert no_top.ids == greedy.ids
    sampled = await hf.generate(PROMPT, 16, exclude_input_in_output=True, seed=3, **SAMPLING)
    assert sampled.ids != greedy.ids


async def test_stop_words_end_generation_and_stay_in_the_output(engine: Engine) -> None:
    free = (await engine.generate(PROMPT, 32, exclude_input_in_output=True, seed=5, **SAMPLING)).ids
    stop = free[10:12]
    end = next(i for i in range(len(free)) if (PROMPT + free[: i + 1])[-2:] == stop)
    for streaming in (False, True):
        reply = await engine.generate(
            PROMPT, 32, exclude_input_in_output=True, streaming=streaming, stop_words_list=word_list([stop]),
            seed=5, **SAMPLING,
        )  # fmt: skip
        assert reply.ids == free[: end + 1]
        assert reply.finals[-1] and not any(reply.finals[:-1])


async def test_bad_words_are_never_completed(engine: Engine) -> None:
    free = (await engine.generate(PROMPT, 48, exclude_input_in_output=True, seed=11, **SAMPLING)).ids
    single, pair = free[3], free[20:22]
    reply = await engine.generate(
        PROMPT, 48, exclude_input_in_output=True, bad_words_list=word_list([[single], pair]), seed=11, **SAMPLING
    )
    assert len(reply.ids) == 48
    assert single not in reply.ids
    assert all(reply.ids[i : i + 2] != pair for i in range(len(reply.ids) - 1))


async def test_end_id_is_not_returned_and_min_tokens_holds_it_off(hf: Engine) -> None:
    free = (await hf.generate(PROMPT, 32, exclude_input_in_output=True, seed=21, **SAMPLING)).ids
    end_id = next(token for token in free[2:] if free.index(token) >= 2)
    first = free.index(end_id)
    ended = await hf.generate(PROMPT, 32, exclude_input_in_output=True, end_id=end_id, seed=21, **SAMPLING)
    assert ended.ids == free[:first]
    stream = await hf.generate(PROMPT, 32, streaming=True, end_id=end_id, seed=21, **SAMPLING)
    assert stream.ids == free[:first]
    # The end id itself is not sent: the stream closes with an empty final response.
    assert stream.responses[-1]["output_ids"].shape == (1, 1, 0) and stream.finals[-1]
    held = await hf.generate(
        PROMPT, 32, exclude_input_in_output=True, end_id=end_id, min_tokens=first + 4, seed=21, **SAMPLING
    )
    assert len(held.ids) >= first + 4 and end_id not in held.ids


@pytest.mark.parametrize("max_tokens", [1, 5, 40])
async def test_request_output_len_is_respected(hf: Engine, max_tokens: int) -> None:
    reply = await hf.generate(PROMPT, max_tokens, streaming=True, **SAMPLING)
    assert len(reply.ids) == max_tokens and len(reply.responses) == max_tokens


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"beam_width": 2}, "beam_width"),
        ({"num_return_sequences": 0}, "num_return_sequences"),
        ({"num_return_sequences": 129}, "num_return_sequences"),
        ({"stop": True}, "request ID is not provided"),
    ],
)
async def test_unsupported_or_invalid_requests_get_an_error(hf: Engine, inputs: dict[str, Any], message: str) -> None:
    reply = await hf.generate(PROMPT, 4, **inputs)
    assert message in reply.error
    assert (await hf.generate(PROMPT, 0)).error  # request_output_len < 1
    assert len((await hf.generate(PROMPT, 4)).ids) == len(PROMPT) + 4  # the engine is still fine


async def test_log_probs_are_returned_for_each_new_token(hf: Engine) -> None:
    reply = await hf.generate(PROMPT, 6, return_log_probs=True, exclude_input_in_output=True, **SAMPLING)
    log_probs = reply.responses[0]["output_log_probs"]
    assert log_probs.shape == (1, 1, 6) and (log_probs <= 0).all() and (log_probs < 0).any()
    assert reply.responses[0]["cum_log_probs"][0, 0] == pytest.approx(log_probs.sum(), rel=1e-4)


async def test_batch_items_get_their_own_responses_and_one_final(hf: Engine) -> None:
    request = hf.request([0], 1)
    del request.inputs[:], request.raw_input_contents[:]
    tensors = {
        "input_ids": np.array([[5, 6, 7], [8, 9, 0]], np.int32),
        "input_lengths": np.array([[3], [2]], np.int32),
        "request_output_len": np.array([[3], [5]], np.int32),
        "exclude_input_in_output": np.array([[True], [True]]),
    }
    for name, array in tensors.items():
        request.inputs.add(name=name, datatype=np_to_triton_dtype(array.dtype), shape=array.shape)
        request.raw_input_contents.append(array.tobytes())
    replies = []
    async for outputs, final, error in hf.stream(request):
        assert not error
        replies.append((int(outputs["batch_index"][0, 0]), outputs["output_ids"].shape[2], final))
        if final:
            break
    assert sorted((index, length) for index, length, _ in replies) == [(0, 3), (1, 5)]
    assert [final for *_, final in replies] == [False, True]


async def test_stop_request_ends_the_running_request(engine: Engine) -> None:
    request_id = f"stop-{uuid.uuid4()}"
    running = engine.stream(engine.request(PROMPT, 3000, request_id, streaming=True, **SAMPLING))
    seen = [await anext(running) for _ in range(3)]
    stop = await engine.generate([0], 1, request_id, stop=True)
    assert stop.finals == [True] and not stop.error and stop.responses == [{}]
    async for outputs, final, error in running:
        seen.append((outputs, final, error))
        if final:
            break
    await running.aclose()
    assert seen[-1][1] and seen[-1][0]["output_ids"].shape == (1, 1, 0)  # a final response, no new token
    assert len(seen) < 3000
    await engine.wait_idle(within=1.0)


@pytest.mark.parametrize("streaming", [True, False])
async def test_cancelling_a_direct_stream_stops_generation(engine: Engine, streaming: bool) -> None:
    request_id = f"cancel-{uuid.uuid4()}"
    task = asyncio.create_task(engine.generate(PROMPT, 3000, request_id, streaming=streaming, **SAMPLING))
    await asyncio.sleep(0.5)
    assert await engine.running() == 1
    task.cancel()  # cancels the gRPC call; a non-streaming request has sent nothing yet
    with pytest.raises(asyncio.CancelledError):
        await task
    await engine.wait_idle(within=0.5)


async def test_synthetic_engine_keeps_its_timetable(synthetic: Engine) -> None:
    reply = await synthetic.generate(PROMPT, 20, streaming=True)
    gaps = np.diff(reply.times)
    assert SYNTHETIC_TTFT_MS / 1000 <= reply.times[0] < SYNTHETIC_TTFT_MS / 1000 + 0.15
    assert SYNTHETIC_ITL_MS / 1000 * 0.8 <= float(np.median(gaps)) < SYNTHETIC_ITL_MS / 1000 * 1.5


async def test_synthetic_engine_serves_200_concurrent_streams(synthetic: Engine) -> None:
    replies = await asyncio.gather(*(synthetic.generate([i + 1, *PROMPT], 20, streaming=True) for i in range(200)))
    assert all(len(r.ids) == 20 and r.finals[-1] and not r.error for r in replies)
    assert len({tuple(r.ids) for r in replies}) > 190  # the prompt seeds the text
    await synthetic.wait_idle(within=1.0)


async def test_synthetic_text_is_valid_utf8_with_multibyte_characters(synthetic: Engine) -> None:
    tokenizer = Tokenizer.from_file(str(synthetic.model_dir / "tokenizer.json"))
    reply = await synthetic.generate(PROMPT, 400, exclude_input_in_output=True)
    text = tokenizer.decode(reply.ids)
    assert "\ufffd" not in text
    assert any(ord(char) > 127 for char in text)
    # Some multi-byte characters are split over several tokens, as a real model's byte-level BPE does.
    assert any("\ufffd" in tokenizer.decode([token]) for token in reply.ids)


async def test_synthetic_engine_streams_several_tokens_per_response_when_asked(
    synthetic: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An engine that streams in intervals: same tokens, fewer responses, the count outputs per response."""
    one_each = await synthetic.generate(PROMPT, 8, streaming=True)
    for batched in _serve(
        "synthetic",
        tmp_path_factory.mktemp("per-response"),
        synthetic_ttft_ms=SYNTHETIC_TTFT_MS,
        synthetic_itl_ms=SYNTHETIC_ITL_MS,
        synthetic_tokens_per_response=3,
    ):
        stream = await batched.generate(PROMPT, 8, streaming=True, return_num_output_tokens=True)
        assert not stream.error
        assert [r["output_ids"].shape for r in stream.responses] == [(1, 1, 3), (1, 1, 3), (1, 1, 2)]
        assert stream.values("sequence_length") == stream.values("num_output_tokens") == [3, 3, 2]
        assert stream.finals == [False, False, True]
        assert stream.ids == one_each.ids


@pytest.mark.parametrize("streaming", [True, False])
async def test_return_sequences_come_tagged_with_their_index_and_one_final(hf: Engine, streaming: bool) -> None:
    reply = await hf.generate(PROMPT, 5, num_return_sequences=3, streaming=streaming, exclude_input_in_output=True,
                              seed=7, **SAMPLING)  # fmt: skip
    assert not reply.error
    by_sequence: dict[int, list[int]] = {}
    for response in reply.responses:
        if "output_ids" in response:
            by_sequence.setdefault(int(response["sequence_index"][0, 0]), []).extend(response["output_ids"][0, 0])
    assert sorted(by_sequence) == [0, 1, 2] and all(len(ids) == 5 for ids in by_sequence.values())
    assert len({tuple(ids) for ids in by_sequence.values()}) > 1  # sampled sequences differ
    assert reply.finals.count(True) == 1 and reply.finals[-1]


async def test_greedy_return_sequences_are_the_same(hf: Engine) -> None:
    reply = await hf.generate(PROMPT, 6, num_return_sequences=2, streaming=True, runtime_top_k=1)
    by_sequence: dict[int, list[int]] = {}
    for response in reply.responses:
        if "output_ids" in response:
            by_sequence.setdefault(int(response["sequence_index"][0, 0]), []).extend(response["output_ids"][0, 0])
    assert by_sequence[0] == by_sequence[1] and len(by_sequence[0]) == 6


async def test_generation_and_context_logits_are_the_models_raw_logits(hf: Engine) -> None:
    reply = await hf.generate(PROMPT, 4, streaming=True, runtime_top_k=1, return_log_probs=True,
                              return_generation_logits=True, return_context_logits=True,
                              _logits=("generation_logits", "context_logits"))  # fmt: skip
    assert not reply.error
    rows = [r for r in reply.responses if "output_ids" in r]
    assert rows[0]["context_logits"].shape[:2] == (1, len(PROMPT))
    for response in rows:
        logits = response["generation_logits"][0, 0, 0].astype(np.float64)
        token = int(response["output_ids"][0, 0, 0])
        assert token == int(np.argmax(logits))  # greedy: the chosen token is the top logit
        log_softmax = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        assert float(response["output_log_probs"][0, 0, 0]) == pytest.approx(log_softmax[token], abs=1e-4)


async def test_a_stop_sent_before_its_request_arrives_does_nothing(synthetic: Engine) -> None:
    """As TensorRT-LLM's backend: a stop for an id it has not seen is answered and forgotten."""
    request_id = f"early-stop-{uuid.uuid4()}"
    stop = await synthetic.generate([0], 1, request_id, stop=True)
    assert stop.finals == [True] and not stop.error
    reply = await synthetic.generate(PROMPT, 30, request_id, streaming=True, **SAMPLING)
    assert len(reply.ids) == 30 and reply.finals[-1] and not reply.error


async def _start(engine: Engine, request_id: str) -> asyncio.Task[Reply]:
    """Start a long streaming request and give it time to reach the engine (each opens its own channel)."""
    task = asyncio.create_task(engine.generate(PROMPT, 3000, request_id, streaming=True, **SAMPLING))
    await asyncio.sleep(0.2)
    return task


async def test_request_metrics_count_active_and_context_as_the_backend_does(slow_start: Engine) -> None:
    await slow_start.wait_idle(within=5)
    ids = [f"metrics-{index}-{uuid.uuid4()}" for index in range(3)]
    tasks = [await _start(slow_start, request_id) for request_id in ids]
    await asyncio.sleep(0.5)
    metrics = await slow_start.request_metrics()
    # Two active (both still in their 2 s context phase), one in the engine's queue: only the running gauge
    # counts the queued one, as the real backend exports no executor queue length.
    assert metrics == {"active": 2, "max": 2, "scheduled": 2, "context": 2, "waiting": 0}
    assert await slow_start.running() == 3
    for request_id in ids:
        await slow_start.generate([0], 1, request_id, stop=True)
    replies = await asyncio.gather(*tasks)
    assert all(reply.finals[-1] and not reply.ids for reply in replies)  # ended before any token
    await slow_start.wait_idle(within=1.0)
    assert (await slow_start.request_metrics())["active"] == 0


async def test_cancelling_a_request_in_its_context_phase_ends_it_within_a_poll(slow_start: Engine) -> None:
    await slow_start.wait_idle(within=5)
    task = await _start(slow_start, f"cancel-early-{uuid.uuid4()}")
    await asyncio.sleep(0.3)
    assert (await slow_start.request_metrics())["context"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await slow_start.wait_idle(within=0.5) < 0.5  # not at its first token, 2 s after admission


async def test_a_stopped_queued_request_keeps_its_place_until_a_slot_frees(slow_start: Engine) -> None:
    """The executor ends a cancelled request only once it has been taken from its queue."""
    await slow_start.wait_idle(within=5)
    running = [f"running-{index}-{uuid.uuid4()}" for index in range(2)]
    queued = f"queued-{uuid.uuid4()}"
    tasks = [await _start(slow_start, request_id) for request_id in [*running, queued]]
    await asyncio.sleep(0.3)
    await slow_start.generate([0], 1, queued, stop=True)
    await asyncio.sleep(0.3)
    assert not tasks[2].done() and await slow_start.running() == 3
    await slow_start.generate([0], 1, running[0], stop=True)
    reply = await asyncio.wait_for(tasks[2], timeout=1.0)
    assert reply.finals == [True] and not reply.ids and not reply.error
    await slow_start.generate([0], 1, running[1], stop=True)
    await asyncio.gather(*tasks[:2])
    await slow_start.wait_idle(within=1.0)
