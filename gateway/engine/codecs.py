"""Upstream modes: how a GenerationRequest becomes a Triton request, and Triton responses become Deltas.

- `ensemble`: text in (`text_input`), per-chunk text out (`text_output`), as NVIDIA's ensemble streams it.
- `bls`: the same tensors on `tensorrt_llm_bls`; with `accumulate_tokens` each streamed text is cumulative.
- `direct`: the gateway tokenizes, calls `tensorrt_llm` with `input_ids`, and detokenizes incrementally itself.

The mode follows from the model's declared config (`codec_for`), so `--triton-model` alone picks it.

Images go to the ensemble and BLS as NVIDIA's multimodal models take them: `image_url_input`, one `data:` URL per
image, in prompt order (docs/multimodal.md), with a `prompt_table_extra_id` naming the images (KV-cache reuse
across requests then never mixes two images' rows); a model takes them when it declares that input (a BLS: and
names its `multimodal_encoders` model), as many per request as the input's dims allow.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from tritonclient.grpc import model_config_pb2, service_pb2

from gateway.engine.base import (
    Delta,
    EncodedImage,
    EngineCapabilities,
    GenerationRequest,
    TokenLogprob,
    TopLogprob,
)
from gateway.engine.detokenize import CumulativeTextDiff, IncrementalDetokenizer, ReplacementMerger
from gateway.engine.logits import log_softmax, logits_rows, top_alternatives
from gateway.engine.tensors import (
    ModelInterface,
    RequestBuilder,
    add_sampling_inputs,
    decode_first_bytes,
    decode_first_int,
)
from gateway.engine.token_ids import TextEncoder
from gateway.engine.token_text import TokenTexts
from gateway.errors import ConfigurationError, UnsupportedFeatureError

UpstreamMode = Literal["ensemble", "bls", "direct"]
IMAGE_INPUT = "image_url_input"
MANY_IMAGES = 2**31 - 1  # an image input with dims [-1]: as many as the request has


class ResponseDecoder(Protocol):
    """Per-request state that turns each Triton response into a Delta (of the sequence it belongs to)."""

    def feed(self, response: service_pb2.ModelInferResponse) -> Delta:
        """The delta carried by one response (text may be empty while a character is incomplete)."""
        ...

    def flush(self, sequence_index: int) -> str:
        """Text of a sequence still held back when the final response arrives."""
        ...


class UpstreamCodec(Protocol):
    """Builds requests for, and decodes responses of, one kind of upstream model."""

    mode: UpstreamMode
    interface: ModelInterface
    stops_engine_on_cancel: bool  # whether a cancelled gRPC call alone stops the generation

    def open(self, request: GenerationRequest) -> tuple[service_pb2.ModelInferRequest, ResponseDecoder]:
        """The Triton request for a generation and the state that decodes its responses."""
        ...

    def capabilities(self) -> EngineCapabilities:
        """What this upstream can do, from its declared tensors."""
        ...


def upstream_streams(request: GenerationRequest, exact: bool) -> bool:
    """Whether to ask the upstream for a stream of responses.

    A client stream needs one. Per-token logprobs need one in the text modes (each response is one token's
    text). A non-streamed request with stop strings is streamed upstream too when the mode's streamed text is
    exact, so that a stop string the engine's token-level match misses still ends the generation early (in
    ensemble mode the non-streamed text is the only exact one, so it is kept).
    """
    return request.stream or request.logprobs or (exact and bool(request.stop))


def add_sequence_inputs(builder: RequestBuilder, request: GenerationRequest, outputs: list[str]) -> None:
    """num_return_sequences / sequence_index, return_log_probs / output_log_probs and the guide, when asked for."""
    if request.guide_type is not None:
        builder.strings("guided_decoding_guide_type", [request.guide_type])
        if request.guide is not None:
            builder.strings("guided_decoding_guide", [request.guide])
    if request.num_sequences > 1:
        builder.scalar("num_return_sequences", request.num_sequences)
        outputs.append("sequence_index")
    if request.logprobs:
        builder.scalar("return_log_probs", True)
        outputs.append("output_log_probs")


def declared_capabilities(
    interface: ModelInterface,
    mode: UpstreamMode,
    exact_stream: bool,
    guided_backend: bool,
    special_tokens: bool,
    max_images: int = 0,
) -> EngineCapabilities:
    """Sequences, logprobs and guides as far as the declared tensors (and the engine's guided backend) allow;
    `special_tokens`: whether the text can keep the tokenizer's special tokens; `max_images` per request."""
    return EngineCapabilities(
        mode=mode,
        # NVIDIA's BLS declares num_return_sequences but ignores it: BLS choices are separate requests.
        return_sequences=mode != "bls"
        and "num_return_sequences" in interface.inputs
        and "sequence_index" in interface.outputs,
        logprobs="return_log_probs" in interface.inputs and "output_log_probs" in interface.outputs,
        exact_stream=exact_stream,
        guided_decoding=guided_backend and "guided_decoding_guide_type" in interface.inputs,
        special_tokens=special_tokens,
        max_images=max_images,
    )


def image_capacity(config: model_config_pb2.ModelConfig) -> int:
    """Images per request the model takes: 0 without `image_url_input` (or a BLS without a multimodal encoders
    model: NVIDIA's BLS declares the image inputs whether or not it has one), 1 for dims [1], else many."""
    declared = next((item for item in config.input if item.name == IMAGE_INPUT), None)
    if declared is None:
        return 0
    if config.platform != "ensemble" and not config_parameter(config, "multimodal_encoders_name"):
        return 0
    return 1 if list(declared.dims) == [1] else MANY_IMAGES


def image_data_urls(images: Sequence[EncodedImage]) -> list[bytes]:
    """Each image as a `data:<type>;base64,` URL (what NVIDIA's preprocessing reads from image_url_input)."""
    return [
        b"data:%s;base64,%s" % (image.media_type.encode(), image.base64 or base64.b64encode(image.data))
        for image in images
    ]


def image_set_id(images: Sequence[EncodedImage]) -> int:
    """A 63-bit id of the request's images, in order (>= 1): TensorRT-LLM's `prompt_table_extra_id`, so that KV
    blocks computed over one image's prompt-table rows are reused only for the same image."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(image.digest or hashlib.sha256(image.data).digest())
    return max(1, int.from_bytes(digest.digest()[:8], "little") >> 1)


def float_values(raw: bytes, datatype: str) -> tuple[float, ...]:
    """A float tensor's contents."""
    count = len(raw) // 4
    return struct.unpack_from(f"<{count}f", raw) if datatype == "FP32" else ()


# ---- text upstreams: ensemble and BLS ------------------------------------------------------------------------

TextPolicy = ReplacementMerger | CumulativeTextDiff


REUSED_BLOCKS_OUTPUT = "kv_cache_reused_blocks"


def add_cache_reuse_output(builder: RequestBuilder, outputs: list[str]) -> None:
    """Ask for the engine's KV-cache reuse (`return_perf_metrics`) when the model declares it."""
    interface = builder.interface
    if "return_perf_metrics" in interface.inputs and REUSED_BLOCKS_OUTPUT in interface.outputs:
        builder.scalar("return_perf_metrics", True)
        outputs.append(REUSED_BLOCKS_OUTPUT)


PRIORITY_INPUT = "priority"


def add_priority_input(builder: RequestBuilder, request: GenerationRequest) -> None:
    """The request's priority, when the model declares a FP32 `priority` input (TensorRT-LLM's request priority,
    0 to 1; NVIDIA's stock models declare none, so it goes nowhere there)."""
    if request.priority is not None and builder.interface.inputs.get(PRIORITY_INPUT) == "FP32":
        builder.scalar(PRIORITY_INPUT, request.priority)


def add_lora_inputs(builder: RequestBuilder, request: GenerationRequest) -> None:
    """The adapter's task id, and its weights and config when they go with this request."""
    lora = request.lora
    if lora is None:
        return
    if "lora_task_id" not in builder.interface.inputs:
        raise UnsupportedFeatureError(
            f"the upstream model '{builder.interface.name}' takes no LoRA adapters (no lora_task_id input)",
            param="model",
        )
    builder.scalar("lora_task_id", lora.task_id)
    if lora.weights is not None:
        builder.raw_tensor("lora_weights", "FP16", lora.weights.weights_shape, lora.weights.weights)
        builder.raw_tensor("lora_config", "INT32", lora.weights.config_shape, lora.weights.config)


class TextDecoder:
    """`text_output` (+ token counts, sequence index, log-probabilities) -> Delta, with the mode's text policy
    per sequence. A token's text for logprobs is its response's own text (one token per streamed response)."""

    __slots__ = ("_block_size", "_counted", "_new_policy", "_policies")

    def __init__(self, new_policy: Callable[[], TextPolicy] | None, counted: bool, block_size: int) -> None:
        self._new_policy = new_policy
        self._policies: dict[int, TextPolicy] = {}
        # Whether responses carry num_output_tokens: then one without it (the flags-only final response)
        # adds 0 tokens instead of making the whole count unknown.
        self._counted = counted
        self._block_size = block_size  # tokens per KV-cache block, for cached_tokens

    def feed(self, response: service_pb2.ModelInferResponse) -> Delta:
        """Parse one response."""
        text = ""
        completion_tokens = 0 if self._counted else None
        prompt_tokens = cached_tokens = None
        sequence_index = 0
        log_probs: tuple[float, ...] = ()
        for output, raw in zip(response.outputs, response.raw_output_contents, strict=False):
            name = output.name
            if name == "text_output":
                text = decode_first_bytes(raw).decode("utf-8", errors="replace")
            elif name == "num_output_tokens":
                completion_tokens = decode_first_int(raw, output.datatype)
            elif name == "num_input_tokens":
                prompt_tokens = decode_first_int(raw, output.datatype)
            elif name == "sequence_index":
                sequence_index = decode_first_int(raw, output.datatype)
            elif name == "output_log_probs":
                log_probs = float_values(raw, output.datatype)
            elif name == REUSED_BLOCKS_OUTPUT:
                cached_tokens = decode_first_int(raw, output.datatype) * self._block_size
        policy = self._policy(sequence_index)
        if policy is not None:
            piece = policy.feed(text)
            text = policy.increment
        else:
            piece = text
        delta = Delta(piece, completion_tokens, prompt_tokens, None, sequence_index)
        delta.cached_tokens = cached_tokens
        if log_probs:
            data = text.encode()
            delta.logprobs = [TokenLogprob(text, data, log_probs[0])]
            delta.logprobs += [TokenLogprob("", b"", value) for value in log_probs[1:]]
        return delta

    def flush(self, sequence_index: int) -> str:
        """Held-back text of one sequence."""
        policy = self._policies.get(sequence_index)
        return policy.flush() if policy is not None else ""

    def _policy(self, sequence_index: int) -> TextPolicy | None:
        if self._new_policy is None:
            return None
        policy = self._policies.get(sequence_index)
        if policy is None:
            policy = self._policies[sequence_index] = self._new_policy()
        return policy


@dataclass
class TextCodec:
    """Ensemble or BLS: text in, text out."""

    interface: ModelInterface
    mode: UpstreamMode
    cumulative: bool
    stops_engine_on_cancel: bool = False  # neither the ensemble nor BLS passes a cancel on to the engine
    guided_backend: bool = False  # the engine model has guided decoding configured (see guided_backend_of)
    kv_block_size: int = 64  # tokens per KV-cache block: kv_cache_reused_blocks -> cached_tokens
    keeps_special_tokens: bool = False  # the postprocessing decodes with skip_special_tokens false
    max_images: int = 0  # images per request (image_capacity)

    def capabilities(self) -> EngineCapabilities:
        """Sequences and logprobs as declared; streamed text is exact only when cumulative (BLS)."""
        return declared_capabilities(
            self.interface, self.mode, self.cumulative, self.guided_backend, self.keeps_special_tokens, self.max_images
        )

    def open(self, request: GenerationRequest) -> tuple[service_pb2.ModelInferRequest, TextDecoder]:
        """text_input, max_tokens, stream, sampling, the count outputs when declared; the text policy."""
        interface = self.interface
        builder = RequestBuilder(interface, request.request_id)
        builder.strings("text_input", [request.prompt])
        builder.scalar("max_tokens", request.max_tokens)
        if request.images:
            if len(request.images) > self.max_images:
                raise UnsupportedFeatureError(
                    f"the upstream model '{interface.name}' takes at most {self.max_images} image(s) per request"
                )
            builder.byte_strings(IMAGE_INPUT, image_data_urls(request.images))
            if "prompt_table_extra_id" in interface.inputs:
                builder.scalar("prompt_table_extra_id", image_set_id(request.images))
        stream = upstream_streams(request, exact=self.cumulative)
        stream_input = interface.input_for("stream")
        if stream_input:
            builder.scalar(stream_input, stream)
        outputs = ["text_output"]
        if "exclude_input_in_output" in interface.inputs:
            builder.scalar("exclude_input_in_output", True)
        for count in ("num_input_tokens", "num_output_tokens"):
            if f"return_{count}" in interface.inputs and count in interface.outputs:
                builder.scalar(f"return_{count}", True)
                outputs.append(count)
        add_sampling_inputs(builder, request)
        add_sequence_inputs(builder, request, outputs)
        add_cache_reuse_output(builder, outputs)
        add_lora_inputs(builder, request)
        add_priority_input(builder, request)
        if request.stop and "stop_words" in interface.inputs:
            # Token-level matching in the engine is best effort; the gateway also matches the text.
            builder.strings("stop_words", request.stop)
        builder.request_outputs(outputs)
        # Delta chunks are merged, cumulative chunks diffed, and a non-streamed text is taken whole.
        policy: Callable[[], TextPolicy] | None = None
        if stream:
            policy = CumulativeTextDiff if self.cumulative else ReplacementMerger
        return builder.message, TextDecoder(policy, "num_output_tokens" in outputs, self.kv_block_size)


# ---- direct: token ids to and from tensorrt_llm --------------------------------------------------------------


@dataclass(slots=True)
class _SequenceState:
    detokenizer: IncrementalDetokenizer
    counted_prompt: bool = False


@dataclass(slots=True)
class TokenDecoder:
    """`output_ids` + `sequence_length` (+ sequence index, log-probabilities, logits) -> Delta, detokenized
    incrementally per sequence."""

    tokenizer: Any
    prompt_ids: list[int]
    texts: TokenTexts | None = None  # set when logprobs are asked for
    top_logprobs: int = 0
    keep_special_tokens: bool = False
    block_size: int = 64  # tokens per KV-cache block, for cached_tokens
    _sequences: dict[int, _SequenceState] = field(default_factory=dict)

    def feed(self, response: service_pb2.ModelInferResponse) -> Delta:
        """Parse one response (first beam only)."""
        ids: list[int] = []
        length = None
        ids_raw = b""
        sequence_index = 0
        cached_tokens: int | None = None
        log_probs: tuple[float, ...] = ()
        generation: np.ndarray | None = None
        context: np.ndarray | None = None
        for output, raw in zip(response.outputs, response.raw_output_contents, strict=False):
            name = output.name
            if name == "output_ids":
                ids_raw = raw
            elif name == "sequence_length":
                length = struct.unpack_from("<i", raw)[0] if raw else 0
            elif name == "sequence_index":
                sequence_index = decode_first_int(raw, output.datatype)
            elif name == "output_log_probs":
                log_probs = float_values(raw, output.datatype)
            elif name == "generation_logits" and raw:
                generation = log_softmax(logits_rows(raw, output.datatype, output.shape[-1]))
            elif name == "context_logits" and raw:
                context = log_softmax(logits_rows(raw, output.datatype, output.shape[-1]))
            elif name == REUSED_BLOCKS_OUTPUT:
                cached_tokens = decode_first_int(raw, output.datatype) * self.block_size
        if ids_raw:
            count = len(ids_raw) // 4 if length is None else length
            ids = list(struct.unpack_from(f"<{count}i", ids_raw))
        state = self._sequences.get(sequence_index)
        if state is None:
            detokenizer = IncrementalDetokenizer(self.tokenizer, skip_special_tokens=not self.keep_special_tokens)
            state = self._sequences[sequence_index] = _SequenceState(detokenizer)
        delta = Delta(state.detokenizer.feed(ids) if ids else "", len(ids), None, None, sequence_index)
        delta.cached_tokens = cached_tokens
        if not state.counted_prompt:
            delta.prompt_tokens = len(self.prompt_ids)
            state.counted_prompt = True
        if self.texts is not None and ids:
            delta.logprobs = self._token_logprobs(ids, log_probs, generation)
        if self.texts is not None and context is not None:
            delta.prompt_logprobs = self._prompt_logprobs(context)
        return delta

    def flush(self, sequence_index: int) -> str:
        """Held-back text of one sequence."""
        state = self._sequences.get(sequence_index)
        return state.detokenizer.flush() if state is not None else ""

    def _token_logprobs(
        self, ids: list[int], values: tuple[float, ...], generation: np.ndarray | None
    ) -> list[TokenLogprob]:
        assert self.texts is not None
        result = []
        for position, token_id in enumerate(ids):
            text, data = self.texts.get(token_id)
            value = values[position] if position < len(values) else None
            top: tuple[TopLogprob, ...] = ()
            if generation is not None and position < generation.shape[0]:
                top = top_alternatives(generation[position], self.top_logprobs, self.texts)
                if value is None:
                    value = float(generation[position, token_id])
            result.append(TokenLogprob(text, data, value, top))
        return result

    def _prompt_logprobs(self, context: np.ndarray) -> list[TokenLogprob]:
        """Each prompt token's log-probability given the tokens before it (the first has none)."""
        assert self.texts is not None
        result = []
        for position, token_id in enumerate(self.prompt_ids):
            text, data = self.texts.get(token_id)
            if position == 0 or position > context.shape[0]:
                result.append(TokenLogprob(text, data, None))
                continue
            row = context[position - 1]
            top = top_alternatives(row, self.top_logprobs, self.texts)
            result.append(TokenLogprob(text, data, float(row[token_id]), top))
        return result


@dataclass
class TokenCodec:
    """Direct calls to `tensorrt_llm` with gateway-side tokenization."""

    interface: ModelInterface
    tokenizer: Any
    engine_logits: bool = False  # the engine was built to gather generation/context logits
    guided_backend: bool = False
    kv_block_size: int = 64  # tokens per KV-cache block: kv_cache_reused_blocks -> cached_tokens
    mode: UpstreamMode = "direct"
    stops_engine_on_cancel: bool = True  # the engine sees a cancelled direct call within a step
    texts: TokenTexts = field(init=False)
    encoder: TextEncoder = field(init=False)

    def __post_init__(self) -> None:
        self.texts = TokenTexts(self.tokenizer)
        self.encoder = TextEncoder.of(self.tokenizer)

    def capabilities(self) -> EngineCapabilities:
        """Sequences and logprobs as declared; top logprobs and prompt logprobs from the engine's logits."""
        declared = declared_capabilities(self.interface, self.mode, True, self.guided_backend, True)
        inputs, outputs = self.interface.inputs, self.interface.outputs
        return EngineCapabilities(
            mode=declared.mode,
            return_sequences=declared.return_sequences,
            logprobs=declared.logprobs,
            top_logprobs=self.engine_logits and "return_generation_logits" in inputs and "generation_logits" in outputs,
            prompt_logprobs=self.engine_logits and "return_context_logits" in inputs and "context_logits" in outputs,
            exact_stream=True,
            guided_decoding=declared.guided_decoding,
            special_tokens=True,  # each request is detokenized as it asks (keep_special_tokens)
        )

    def open(self, request: GenerationRequest) -> tuple[service_pb2.ModelInferRequest, TokenDecoder]:
        """input_ids, input_lengths, request_output_len, streaming, end/pad ids, sampling, stop word ids."""
        ids = self.encoder.ids(request.prompt)
        builder = RequestBuilder(self.interface, request.request_id)
        builder.int32_array("input_ids", ids)
        builder.scalar("input_lengths", len(ids))
        builder.scalar("request_output_len", request.max_tokens)
        builder.scalar("streaming", upstream_streams(request, exact=True))
        if "exclude_input_in_output" in self.interface.inputs:
            builder.scalar("exclude_input_in_output", True)
        eos = self.tokenizer.eos_token_id
        if eos is not None and not request.sampling.ignore_eos:
            builder.scalar("end_id", eos)
        pad = self.tokenizer.pad_token_id
        if pad is not None and "pad_id" in self.interface.inputs:
            builder.scalar("pad_id", pad)
        add_sampling_inputs(builder, request)
        outputs = ["output_ids", "sequence_length"]
        add_sequence_inputs(builder, request, outputs)
        add_cache_reuse_output(builder, outputs)
        add_lora_inputs(builder, request)
        add_priority_input(builder, request)
        if request.top_logprobs > 0:
            builder.scalar("return_generation_logits", True)
            outputs.append("generation_logits")
        if request.prompt_logprobs:
            builder.scalar("return_context_logits", True)
            outputs.append("context_logits")
        if request.stop and "stop_words_list" in self.interface.inputs:
            builder.word_list("stop_words_list", [self.encoder.ids(stop) for stop in request.stop])
        builder.request_outputs(outputs)
        wants_logprobs = request.logprobs or request.prompt_logprobs
        texts = self.texts if wants_logprobs else None
        decoder = TokenDecoder(
            self.tokenizer, ids, texts, request.top_logprobs, request.keep_special_tokens, self.kv_block_size
        )
        return builder.message, decoder


def config_parameter(config: model_config_pb2.ModelConfig, key: str) -> str:
    """A string parameter of a model config; "" when unset, empty or an unfilled `${...}` placeholder."""
    text = config.parameters[key].string_value.strip() if key in config.parameters else ""
    return "" if text.startswith("${") else text


def bls_streams_through_exec(config: model_config_pb2.ModelConfig) -> bool:
    """Whether the model is this project's BLS calling tensorrt_llm through the Python backend's
    `exec(decoupled=True)`, which can deadlock under load: it declares `engine_grpc_url` and leaves it empty
    (triton_repo/README.md, "Known defects"; NVIDIA's BLS, one request per instance, declares no such key)."""
    return "engine_grpc_url" in config.parameters and not config_parameter(config, "engine_grpc_url")


def guided_backend_of(engine_config: model_config_pb2.ModelConfig) -> bool:
    """Whether the engine model enforces guides: TensorRT-LLM silently ignores them unless both
    `guided_decoding_backend` is `xgrammar` and `xgrammar_tokenizer_info_path` is filled."""
    return config_parameter(engine_config, "guided_decoding_backend").lower() == "xgrammar" and bool(
        config_parameter(engine_config, "xgrammar_tokenizer_info_path")
    )


def codec_for(
    config: model_config_pb2.ModelConfig,
    tokenizer: Any | None,
    engine_logits: bool = False,
    guided_backend: bool = False,
    kv_block_size: int = 64,
    keeps_special_tokens: bool = False,
) -> UpstreamCodec:
    """Pick the upstream mode from a model's declared config (`guided_backend`: from the engine model's;
    `kv_block_size`: tokens per KV-cache block; `keeps_special_tokens`: the text model's postprocessing keeps
    them)."""
    interface = ModelInterface.from_config(config)
    if not interface.decoupled:
        raise ConfigurationError(f"model '{config.name}' must be deployed decoupled (decoupled_mode:true)")
    if {"input_ids", "input_lengths", "request_output_len"} <= interface.inputs.keys():
        if tokenizer is None:
            raise ConfigurationError(f"calling '{config.name}' directly needs the model's tokenizer (--tokenizer)")
        return TokenCodec(interface, tokenizer, engine_logits, guided_backend, kv_block_size)
    missing = ({"text_input", "max_tokens"} - interface.inputs.keys()) | ({"text_output"} - interface.outputs.keys())
    if missing:
        raise ConfigurationError(
            f"model '{config.name}' lacks {sorted(missing)}: not a TensorRT-LLM ensemble, BLS or engine model"
        )
    if config.platform == "ensemble":
        return TextCodec(
            interface,
            mode="ensemble",
            cumulative=False,
            guided_backend=guided_backend,
            kv_block_size=kv_block_size,
            keeps_special_tokens=keeps_special_tokens,
            max_images=image_capacity(config),
        )
    accumulate = config_parameter(config, "accumulate_tokens").lower()
    return TextCodec(
        interface,
        mode="bls",
        cumulative=accumulate in ("true", "1", "yes"),
        guided_backend=guided_backend,
        kv_block_size=kv_block_size,
        keeps_special_tokens=keeps_special_tokens,
        max_images=image_capacity(config),
    )
