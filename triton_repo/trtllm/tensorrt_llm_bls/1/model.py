"""Triton Python model `tensorrt_llm_bls`: preprocessing -> tensorrt_llm -> postprocessing in Python.

Same external interface as TensorRT-LLM's tensorrt_llm_bls, and the same inner calls as the ensemble (inputs
renamed top_k -> runtime_top_k, top_p -> runtime_top_p, length_penalty -> len_penalty, stream -> streaming).
Where it differs from NVIDIA's model, on purpose:
- The inner tensorrt_llm request carries the client's request id (a fresh uuid when the client sent none), not
  a random one: a gateway can then stop a generation with a stop=true request to tensorrt_llm using its own id.
  Client request ids must therefore be unique among running requests.
- Like NVIDIA's BLS, it does not poll response_sender.is_cancelled(): a client that cancels must send that
  stop request itself (the gateway does). Polling it from the worker threads while other requests were
  cancelled crashed the Triton 2.51 Python backend stub (double free) within a few hundred cancelled streams.
- Each request runs in its own thread, so one instance serves many requests at once. With `engine_grpc_url`
  set, its tensorrt_llm calls go over Triton's gRPC endpoint (bls_engine.py), not `exec(decoupled=True)`,
  whose threads can deadlock the stub (triton_repo/README.md, "Known defects").
- Nothing is read from a hard-coded localhost:8001; no speculative decoding. Images (with a
  `multimodal_encoders_name`): bls_vision.py; a request without images skips the encoder.
String stop words are matched on the text (as NVIDIA's newer BLS does) in addition to the engine's token-level
match: once one matches, the text is cut just after it, tensorrt_llm is told to stop, and the request ends.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from bls_engine import EngineResponse, ExecEngine, ExecResponse, GrpcEngine, StepError
from bls_text import SequenceText
from bls_vision import IMAGE_INPUTS, PROCESSED_IMAGE_INPUT, VISION_OUTPUTS, encode_images

PREPROCESSING = "preprocessing"
POSTPROCESSING = "postprocessing"
TRUE_WORDS = {"true", "1", "t", "y", "yes"}
FINALIZE_WAIT_S = 5.0
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL

# client input -> preprocessing input
PREPROCESSING_INPUTS = {
    "text_input": "QUERY",
    "decoder_text_input": "DECODER_QUERY",
    "max_tokens": "REQUEST_OUTPUT_LEN",
    "bad_words": "BAD_WORDS_DICT",
    "stop_words": "STOP_WORDS_DICT",
    "embedding_bias_words": "EMBEDDING_BIAS_WORDS",
    "embedding_bias_weights": "EMBEDDING_BIAS_WEIGHTS",
    "end_id": "END_ID",
    "pad_id": "PAD_ID",
    "prompt_table_extra_id": "PROMPT_TABLE_EXTRA_ID",
}
# preprocessing output -> tensorrt_llm input
PREPROCESSED_INPUTS = {
    "INPUT_ID": "input_ids",
    "REQUEST_INPUT_LEN": "input_lengths",
    "DECODER_INPUT_ID": "decoder_input_ids",
    "REQUEST_DECODER_INPUT_LEN": "decoder_input_lengths",
    "REQUEST_OUTPUT_LEN": "request_output_len",
    "STOP_WORDS_IDS": "stop_words_list",
    "BAD_WORDS_IDS": "bad_words_list",
    "EMBEDDING_BIAS": "embedding_bias",
    "OUT_END_ID": "end_id",
    "OUT_PAD_ID": "pad_id",
    "OUT_PROMPT_TABLE_EXTRA_IDS": "prompt_table_extra_ids",
}
# client input -> tensorrt_llm input
DIRECT_INPUTS = {
    "exclude_input_in_output": "exclude_input_in_output",
    "top_k": "runtime_top_k",
    "top_p": "runtime_top_p",
    "temperature": "temperature",
    "length_penalty": "len_penalty",
    "repetition_penalty": "repetition_penalty",
    "min_tokens": "min_tokens",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "return_log_probs": "return_log_probs",
    "return_context_logits": "return_context_logits",
    "return_generation_logits": "return_generation_logits",
    "return_perf_metrics": "return_perf_metrics",
    "return_num_input_tokens": "return_num_input_tokens",
    "return_num_output_tokens": "return_num_output_tokens",
    "num_return_sequences": "num_return_sequences",
    "beam_width": "beam_width",
    "stream": "streaming",
    "prompt_embedding_table": "prompt_embedding_table",
    "prompt_vocab_size": "prompt_vocab_size",
    "lora_task_id": "lora_task_id",
    "lora_weights": "lora_weights",
    "lora_config": "lora_config",
    "guided_decoding_guide_type": "guided_decoding_guide_type",
    "guided_decoding_guide": "guided_decoding_guide",
}
UNSUPPORTED_INPUTS = ("video_bytes_input", "use_draft_logits")
# Engine outputs this model always requests because it reads them itself (the last two also go to the client
# when it asks for them).
OWN_OUTPUTS = {"output_ids", "sequence_length", "batch_index", "sequence_index"}


def parameter(config: dict[str, Any], key: str) -> str | None:
    """A string parameter of the model config; None when missing, empty or an unfilled `${...}` placeholder."""
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return None if value == "" or value.startswith("${") else value


def inner_request(model: str, inputs: list[Any], outputs: list[str], request_id: str = "") -> Any:
    """A BLS request to another model of this Triton."""
    return pb_utils.InferenceRequest(
        model_name=model, inputs=inputs, requested_output_names=outputs, request_id=request_id
    )


def run_step(model: str, request: Any) -> Any:
    """Execute a non-decoupled inner request and return its response, raising StepError on error."""
    response = request.exec()
    if response.has_error():
        raise StepError(f"{model}: {response.error().message()}")
    return response


def scalar(response: EngineResponse, name: str, default: int = 0) -> int:
    """The first value of an optional output of an engine response."""
    array = response.array(name)
    return default if array is None else int(array.reshape(-1)[0])


class TritonPythonModel:
    """The BLS entry point: one worker thread per request in decoupled mode."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the parameters and the output names."""
        config = json.loads(args["model_config"])
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        self.accumulate = (parameter(config, "accumulate_tokens") or "").lower() in TRUE_WORDS
        self.llm_model = parameter(config, "tensorrt_llm_model_name") or "tensorrt_llm"
        self.encoders_model = parameter(config, "multimodal_encoders_name")  # None: no images
        if parameter(config, "tensorrt_llm_draft_model_name"):
            pb_utils.Logger.log_warn("tensorrt_llm_bls: tensorrt_llm_draft_model_name is ignored (not supported here)")
        grpc_url = parameter(config, "engine_grpc_url")
        self.engine = GrpcEngine(self.llm_model, grpc_url) if grpc_url else ExecEngine(self.llm_model)
        self.output_names = [o["name"] for o in config["output"]]
        self.workers: set[threading.Thread] = set()
        self.workers_lock = threading.Lock()

    def execute(self, requests: list[Any]) -> list[Any] | None:
        """Decoupled: start a worker per request and return at once. Otherwise answer each in turn."""
        if self.decoupled:
            for request in requests:
                worker = threading.Thread(target=self._serve_decoupled, args=(request,), daemon=True)
                with self.workers_lock:
                    self.workers.add(worker)
                worker.start()
            return None
        return [self._serve_single(request) for request in requests]

    def finalize(self) -> None:
        """Give running requests up to FINALIZE_WAIT_S in all to finish before the model goes away."""
        deadline = time.monotonic() + FINALIZE_WAIT_S
        with self.workers_lock:
            workers = list(self.workers)
        for worker in workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        self.engine.close()

    def _serve_decoupled(self, request: Any) -> None:
        sender = request.get_response_sender()
        generation = Generation(self, request)
        try:
            for response in generation.responses():
                sender.send(response)
            sender.send(flags=FINAL)
        except Exception as exc:
            generation.stop_engine()
            with contextlib.suppress(Exception):  # the final flag may already be out; nothing more to tell
                sender.send(error_response(exc), flags=FINAL)
        finally:
            generation.drain()  # after the final response: the client never waits for this
            with self.workers_lock:
                self.workers.discard(threading.current_thread())

    def _serve_single(self, request: Any) -> Any:
        try:
            responses = list(Generation(self, request).responses())
        except Exception as exc:
            return error_response(exc)
        return responses[-1] if responses else error_response(StepError("tensorrt_llm returned no output"))


def error_response(exc: Exception) -> Any:
    """An error response whose message says which step failed."""
    pb_utils.Logger.log_error(f"tensorrt_llm_bls: {exc}")
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"tensorrt_llm_bls: {exc}"))


class Generation:
    """One client request: its inner requests, text state, and the means to stop the engine."""

    def __init__(self, model: TritonPythonModel, request: Any) -> None:
        self.model = model
        self.request = request
        # The client's id, so that a stop=true request to tensorrt_llm with that id reaches this generation.
        self.request_id = request.request_id() or uuid.uuid4().hex
        self.engine_responses: Iterator[EngineResponse] | None = None
        self.engine_done = False
        wanted = set(request.requested_output_names())
        self.passthrough = [n for n in model.output_names if n in wanted and n != "text_output"]

    def input(self, name: str) -> np.ndarray | None:
        """A client input as numpy, or None when absent."""
        tensor = pb_utils.get_input_tensor_by_name(self.request, name)
        return None if tensor is None else tensor.as_numpy()

    def responses(self) -> Iterator[Any]:
        """Client responses, one per engine response (those after a stop string are dropped)."""
        text_input = self.input("text_input")
        self._validate(text_input)
        preprocessed, engine_inputs = self._preprocess()
        llm = self.model.llm_model
        inputs = engine_inputs + self._tensors(DIRECT_INPUTS)
        outputs = sorted(OWN_OUTPUTS | set(self.passthrough))
        if self.model.decoupled:
            self.engine_responses = self.model.engine.stream(inputs, outputs, self.request_id)
        else:
            self.engine_done = True  # a single response is the whole generation: nothing left to stop
            response = run_step(llm, inner_request(llm, inputs, outputs, self.request_id))
            self.engine_responses = iter([ExecResponse(response)])

        streaming = self._flag("stream")
        stop_words = self._stop_words(text_input.shape[0])
        prompt_ids = pb_utils.get_output_tensor_by_name(preprocessed, "INPUT_ID").as_numpy()
        prompt_lengths = pb_utils.get_output_tensor_by_name(preprocessed, "REQUEST_INPUT_LEN").as_numpy()
        sequences: dict[tuple[int, int], SequenceText] = {}
        expected = text_input.shape[0] * self._sequences_per_item()
        for engine_response in self.engine_responses:
            ids = engine_response.array("output_ids")
            lengths = engine_response.array("sequence_length")
            if ids is None or lengths is None:  # a flags-only final response
                continue
            item = scalar(engine_response, "batch_index")
            key = (item, scalar(engine_response, "sequence_index"))
            beams = ids.shape[1]
            state = sequences.setdefault(
                key, SequenceText(cumulative=beams > 1 or self.model.accumulate, stop_words=stop_words[item])
            )
            if state.finished:
                continue
            start = 0
            if not streaming and self._echoes_prompt(ids, lengths, prompt_ids[item], int(prompt_lengths[item, 0])):
                start = len(text_input[item, 0].decode("utf-8", errors="replace"))
            texts = state.update(self._decode(state, ids, lengths), generation_start=start)
            yield self._client_response(engine_response, texts)
            if sum(s.finished for s in sequences.values()) == expected:
                self.stop_engine()
                return
        self.engine_done = True

    def _preprocess(self) -> tuple[Any, list[Any]]:
        """preprocessing (and, for a request with images, multimodal_encoders): its answer, the engine's inputs."""
        images = [name for name in (*IMAGE_INPUTS, PROCESSED_IMAGE_INPUT[0]) if self.input(name) is not None]
        if images and self.model.encoders_model is None:
            raise ValueError(f"{images[0]} needs a multimodal encoders model (parameter multimodal_encoders_name)")
        if images and self.input("prompt_embedding_table") is not None:
            raise ValueError("images and prompt_embedding_table cannot be combined (the encoder makes the table)")
        outputs = list(PREPROCESSED_INPUTS) + (list(VISION_OUTPUTS) if images else [])
        inputs = self._tensors(PREPROCESSING_INPUTS | IMAGE_INPUTS)
        preprocessed = run_step(PREPROCESSING, inner_request(PREPROCESSING, inputs, outputs, self.request_id))
        engine_inputs = [
            pb_utils.Tensor(new, tensor.as_numpy())
            for old, new in PREPROCESSED_INPUTS.items()
            if (tensor := pb_utils.get_output_tensor_by_name(preprocessed, old)) is not None
        ]
        if images:
            assert self.model.encoders_model is not None
            processed = self.input(PROCESSED_IMAGE_INPUT[0])
            engine_inputs += encode_images(
                self.model.encoders_model, preprocessed, processed, self.request_id, run_step
            )
        return preprocessed, engine_inputs

    def stop_engine(self) -> None:
        """Ask tensorrt_llm to stop this generation (a stop=true request with the same id), once."""
        if self.engine_responses is None or self.engine_done:
            return
        self.engine_done = True
        llm = self.model.llm_model
        stop = [
            pb_utils.Tensor("input_ids", np.zeros((1, 1), np.int32)),
            pb_utils.Tensor("input_lengths", np.zeros((1, 1), np.int32)),
            pb_utils.Tensor("request_output_len", np.zeros((1, 1), np.int32)),
            pb_utils.Tensor("stop", np.ones((1, 1), np.bool_)),
        ]
        try:
            if self.model.decoupled:
                for _ in self.model.engine.stream(stop, [], self.request_id):
                    pass
            else:
                run_step(llm, inner_request(llm, stop, [], self.request_id))
        except Exception as exc:  # the stop is best effort; the client's request is over either way
            pb_utils.Logger.log_warn(f"tensorrt_llm_bls: stopping request {self.request_id} failed: {exc}")

    def drain(self) -> None:
        """Consume what the engine still sends after a stop, so the inner request is released."""
        if self.engine_responses is None:
            return
        try:
            for _ in self.engine_responses:
                pass
        except Exception as exc:
            pb_utils.Logger.log_verbose(f"tensorrt_llm_bls: after stop, {exc}")

    def _validate(self, text_input: np.ndarray) -> None:
        max_tokens = self.input("max_tokens")
        if text_input.size == 0:
            raise ValueError("text_input is empty")
        if max_tokens is None or max_tokens.size == 0 or int(max_tokens.reshape(-1)[0]) <= 0:
            raise ValueError("max_tokens must be a single value > 0")
        unsupported = [name for name in UNSUPPORTED_INPUTS if self.input(name) is not None]
        draft_tokens = self.input("num_draft_tokens")
        if draft_tokens is not None and int(draft_tokens.reshape(-1)[0]) > 0:
            unsupported.append("num_draft_tokens")
        if unsupported:
            raise ValueError(f"inputs not supported by this BLS model: {', '.join(unsupported)}")

    def _tensors(self, names: dict[str, str]) -> list[Any]:
        tensors = []
        for client_name, inner_name in names.items():
            value = self.input(client_name)
            if value is not None:
                # Inputs declared with an empty reshape arrive as [batch]; inner models expect [batch, 1].
                tensors.append(pb_utils.Tensor(inner_name, value.reshape(-1, 1) if value.ndim == 1 else value))
        return tensors

    def _flag(self, name: str) -> bool:
        value = self.input(name)
        return value is not None and bool(value.reshape(-1)[0])

    def _sequences_per_item(self) -> int:
        beam_width = self.input("beam_width")
        count = self.input("num_return_sequences")
        if count is None or (beam_width is not None and int(beam_width.reshape(-1)[0]) > 1):
            return 1  # beam search returns its sequences as beams of one response
        return max(1, int(count.reshape(-1)[0]))

    def _stop_words(self, batch: int) -> list[list[str]]:
        words = self.input("stop_words")
        if words is None:
            return [[] for _ in range(batch)]
        return [[w.decode("utf-8") for w in row.reshape(-1) if w] for row in words]

    @staticmethod
    def _echoes_prompt(ids: np.ndarray, lengths: np.ndarray, prompt: np.ndarray, prompt_length: int) -> bool:
        """Whether a non-streaming result starts with the prompt (exclude_input_in_output false)."""
        return int(lengths[0, 0]) >= prompt_length and np.array_equal(ids[0, 0, :prompt_length], prompt[:prompt_length])

    def _decode(self, state: SequenceText, ids: np.ndarray, lengths: np.ndarray) -> list[str]:
        """Text of each beam: of this response only, or of all tokens so far when accumulating (beam 1)."""
        if state.cumulative and ids.shape[1] == 1:
            state.tokens.extend(ids[0, 0, : int(lengths[0, 0])].tolist())
            ids = np.array([[state.tokens]], np.int32).reshape(1, 1, -1)
            lengths = np.array([[len(state.tokens)]], np.int32)
        inputs = [
            pb_utils.Tensor("TOKENS_BATCH", ids.astype(np.int32)),
            pb_utils.Tensor("SEQUENCE_LENGTH", lengths.astype(np.int32)),
        ]
        decoded = run_step(POSTPROCESSING, inner_request(POSTPROCESSING, inputs, ["OUTPUT"]))
        output = pb_utils.get_output_tensor_by_name(decoded, "OUTPUT").as_numpy().reshape(-1)
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in output]

    def _client_response(self, engine_response: EngineResponse, texts: list[str]) -> Any:
        text = pb_utils.Tensor("text_output", np.array([t.encode("utf-8") for t in texts], dtype=np.object_))
        passed = [tensor for name in self.passthrough if (tensor := engine_response.tensor(name)) is not None]
        return pb_utils.InferenceResponse(output_tensors=[text, *passed])
