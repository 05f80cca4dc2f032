"""Upstream modes: how a GenerationRequest becomes a Triton request, and Triton responses become Deltas.

- `ensemble`: text in (`text_input`), per-chunk text out (`text_output`), as NVIDIA's ensemble streams it.
- `bls`: the same tensors on `tensorrt_llm_bls`; with `accumulate_tokens` each streamed text is cumulative.
- `direct`: the gateway tokenizes, calls `tensorrt_llm` with `input_ids`, and detokenizes incrementally itself.

The mode follows from the model's declared config (`codec_for`), so `--triton-model` alone picks it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tritonclient.grpc import model_config_pb2, service_pb2

from gateway.engine.base import Delta, GenerationRequest
from gateway.engine.detokenize import CumulativeTextDiff, IncrementalDetokenizer, ReplacementMerger
from gateway.engine.tensors import (
    ModelInterface,
    RequestBuilder,
    add_sampling_inputs,
    decode_first_bytes,
    decode_first_int,
)
from gateway.errors import ConfigurationError

UpstreamMode = Literal["ensemble", "bls", "direct"]


class ResponseDecoder(Protocol):
    """Per-request state that turns each Triton response into a Delta."""

    def feed(self, response: service_pb2.ModelInferResponse) -> Delta:
        """The delta carried by one response (text may be empty while a character is incomplete)."""
        ...

    def flush(self) -> str:
        """Text still held back when the final response arrives."""
        ...


class UpstreamCodec(Protocol):
    """Builds requests for, and decodes responses of, one kind of upstream model."""

    mode: UpstreamMode
    interface: ModelInterface
    stops_engine_on_cancel: bool  # whether a cancelled gRPC call alone stops the generation

    def open(self, request: GenerationRequest) -> tuple[service_pb2.ModelInferRequest, ResponseDecoder]:
        """The Triton request for a generation and the state that decodes its responses."""
        ...


def upstream_streams(request: GenerationRequest, exact: bool) -> bool:
    """Whether to ask the upstream for a stream of responses.

    A client stream needs one. A non-streamed request with stop strings is streamed upstream too when the
    mode's streamed text is exact, so that a stop string the engine's token-level match misses still ends the
    generation early (in ensemble mode the non-streamed text is the only exact one, so it is kept).
    """
    return request.stream or (exact and bool(request.stop))


# ---- text upstreams: ensemble and BLS ------------------------------------------------------------------------


class TextDecoder:
    """`text_output` (+ token counts) -> Delta, with the text policy of the mode."""

    __slots__ = ("_text",)

    def __init__(self, text_policy: ReplacementMerger | CumulativeTextDiff | None) -> None:
        self._text = text_policy

    def feed(self, response: service_pb2.ModelInferResponse) -> Delta:
        """Parse one response."""
        delta = Delta(text="")
        for output, raw in zip(response.outputs, response.raw_output_contents, strict=False):
            name = output.name
            if name == "text_output":
                text = decode_first_bytes(raw).decode("utf-8", errors="replace")
                delta.text = self._text.feed(text) if self._text is not None else text
            elif name == "num_output_tokens":
                delta.completion_tokens = decode_first_int(raw, output.datatype)
            elif name == "num_input_tokens":
                delta.prompt_tokens = decode_first_int(raw, output.datatype)
        return delta

    def flush(self) -> str:
        """Held-back text."""
        return self._text.flush() if self._text is not None else ""


@dataclass
class TextCodec:
    """Ensemble or BLS: text in, text out."""

    interface: ModelInterface
    mode: UpstreamMode
    cumulative: bool
    stops_engine_on_cancel: bool = False  # neither the ensemble nor BLS passes a cancel on to the engine

    def open(self, request: GenerationRequest) -> tuple[service_pb2.ModelInferRequest, TextDecoder]:
        """text_input, max_tokens, stream, sampling, the count outputs when declared; the text policy."""
        interface = self.interface
        builder = RequestBuilder(interface, request.request_id)
        builder.strings("text_input", [request.prompt])
        builder.scalar("max_tokens", request.max_tokens)
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
        if request.stop and "stop_words" in interface.inputs:
            # Token-level matching in the engine is best effort; the gateway also matches the text.
            builder.strings("stop_words", request.stop)
        builder.request_outputs(outputs)
        # Delta chunks are merged, cumulative chunks diffed, and a non-streamed text is taken whole.
        policy: ReplacementMerger | CumulativeTextDiff | None = None
        if stream:
            policy = CumulativeTextDiff() if self.cumulative else ReplacementMerger()
        return builder.message, TextDecoder(policy)


# ---- direct: token ids to and from tensorrt_llm --------------------------------------------------------------


class TokenDecoder:
    """`output_ids` + `sequence_length` -> Delta, detokenized incrementally."""

    __slots__ = ("_detokenizer", "_prompt_tokens", "_sent_prompt_count")

    def __init__(self, tokenizer: Any, prompt_tokens: int) -> None:
        self._detokenizer = IncrementalDetokenizer(tokenizer)
        self._prompt_tokens = prompt_tokens
        self._sent_prompt_count = False

    def feed(self, response: service_pb2.ModelInferResponse) -> Delta:
        """Parse one response (first beam only)."""
        ids: list[int] = []
        length = None
        ids_raw = b""
        for output, raw in zip(response.outputs, response.raw_output_contents, strict=False):
            if output.name == "output_ids":
                ids_raw = raw
            elif output.name == "sequence_length":
                length = struct.unpack_from("<i", raw)[0] if raw else 0
        if ids_raw:
            count = len(ids_raw) // 4 if length is None else length
            ids = list(struct.unpack_from(f"<{count}i", ids_raw))
        delta = Delta(text=self._detokenizer.feed(ids) if ids else "", completion_tokens=len(ids))
        if not self._sent_prompt_count:
            delta.prompt_tokens = self._prompt_tokens
            self._sent_prompt_count = True
        return delta

    def flush(self) -> str:
        """Held-back text."""
        return self._detokenizer.flush()


@dataclass
class TokenCodec:
    """Direct calls to `tensorrt_llm` with gateway-side tokenization."""

    interface: ModelInterface
    tokenizer: Any
    mode: UpstreamMode = "direct"
    stops_engine_on_cancel: bool = True  # the engine sees a cancelled direct call within a step

    def open(self, request: GenerationRequest) -> tuple[service_pb2.ModelInferRequest, TokenDecoder]:
        """input_ids, input_lengths, request_output_len, streaming, end/pad ids, sampling, stop word ids."""
        ids = self.tokenizer.encode(request.prompt, add_special_tokens=False)
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
        if request.stop and "stop_words_list" in self.interface.inputs:
            builder.word_list(
                "stop_words_list", [self.tokenizer.encode(s, add_special_tokens=False) for s in request.stop]
            )
        builder.request_outputs(["output_ids", "sequence_length"])
        return builder.message, TokenDecoder(self.tokenizer, prompt_tokens=len(ids))


def codec_for(config: model_config_pb2.ModelConfig, tokenizer: Any | None) -> UpstreamCodec:
    """Pick the upstream mode from a model's declared config."""
    interface = ModelInterface.from_config(config)
    if not interface.decoupled:
        raise ConfigurationError(f"model '{config.name}' must be deployed decoupled (decoupled_mode:true)")
    if {"input_ids", "input_lengths", "request_output_len"} <= interface.inputs.keys():
        if tokenizer is None:
            raise ConfigurationError(f"calling '{config.name}' directly needs the model's tokenizer (--tokenizer)")
        return TokenCodec(interface, tokenizer)
    missing = ({"text_input", "max_tokens"} - interface.inputs.keys()) | ({"text_output"} - interface.outputs.keys())
    if missing:
        raise ConfigurationError(
            f"model '{config.name}' lacks {sorted(missing)}: not a TensorRT-LLM ensemble, BLS or engine model"
        )
    if config.platform == "ensemble":
        return TextCodec(interface, mode="ensemble", cumulative=False)
    accumulate = (
        config.parameters["accumulate_tokens"].string_value.strip().lower()
        if "accumulate_tokens" in config.parameters
        else ""
    )
    return TextCodec(interface, mode="bls", cumulative=accumulate in ("true", "1", "yes"))
