"""Triton wire tensors: GenerationRequest -> ModelInferRequest, ModelInferResponse -> values.

Built on the protobuf messages directly (not tritonclient's InferInput): it is cheaper per request, and the aio
client cannot set the `triton_enable_empty_final_response` parameter that a decoupled ensemble needs.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2, service_pb2

from gateway.engine.base import GenerationRequest
from gateway.errors import InvalidRequestError, UnsupportedFeatureError

# config.pbtxt data types -> wire datatype names
WIRE_TYPES = {
    model_config_pb2.TYPE_BOOL: "BOOL",
    model_config_pb2.TYPE_INT32: "INT32",
    model_config_pb2.TYPE_UINT32: "UINT32",
    model_config_pb2.TYPE_INT64: "INT64",
    model_config_pb2.TYPE_UINT64: "UINT64",
    model_config_pb2.TYPE_FP32: "FP32",
    model_config_pb2.TYPE_STRING: "BYTES",
}
_STRUCT_CODES = {"BOOL": "?", "INT32": "i", "UINT32": "I", "INT64": "q", "UINT64": "Q", "FP32": "f"}
# Per streamed response: compiled once, not looked up from a format string each time.
_FIRST_VALUE = {datatype: struct.Struct("<" + code).unpack_from for datatype, code in _STRUCT_CODES.items()}
_BYTES_LENGTH = struct.Struct("<I").unpack_from

# FP32's range: a smaller non-zero value would become 0 or a subnormal (which GPU kernels flush to 0), a larger
# one infinity; either changes what the engine does (a repetition_penalty of 1e-320 arrives as 0 and is refused).
FP32_SMALLEST_NORMAL = 2.0**-126
FP32_MAX = (2 - 2.0**-23) * 2.0**127


def fp32_exact_enough(value: float) -> bool:
    """Whether `value` keeps its meaning as a 32-bit float: 0, or finite, normal and within range."""
    magnitude = abs(value)
    return magnitude == 0 or FP32_SMALLEST_NORMAL <= magnitude <= FP32_MAX


# OpenAI-side field -> the input names it may have, newest first (TRITON_INTERFACE.md §1.1, §3.1).
INPUT_ALIASES: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "top_p": ("top_p", "runtime_top_p"),
    "top_k": ("top_k", "runtime_top_k"),
    "seed": ("seed", "random_seed"),
    "min_tokens": ("min_tokens", "min_length"),
    "presence_penalty": ("presence_penalty",),
    "frequency_penalty": ("frequency_penalty",),
    "repetition_penalty": ("repetition_penalty",),
    "stream": ("stream", "streaming"),
    "ignore_eos": ("end_id",),
}

EMPTY_FINAL_PARAMETER = "triton_enable_empty_final_response"
FINAL_RESPONSE_PARAMETER = "triton_final_response"


@dataclass(frozen=True)
class ModelInterface:
    """The inputs and outputs a Triton model declares, as name -> wire datatype."""

    name: str
    inputs: dict[str, str]
    outputs: dict[str, str]
    decoupled: bool

    @classmethod
    def from_config(cls, config: model_config_pb2.ModelConfig) -> ModelInterface:
        """Read a ModelConfig (from the ModelConfig RPC)."""
        return cls(
            name=config.name,
            inputs={i.name: WIRE_TYPES.get(i.data_type, "") for i in config.input},
            outputs={o.name: WIRE_TYPES.get(o.data_type, "") for o in config.output},
            decoupled=config.model_transaction_policy.decoupled,
        )

    def input_for(self, field: str) -> str | None:
        """The declared input name that carries an OpenAI-side field, if any."""
        return next((name for name in INPUT_ALIASES[field] if name in self.inputs), None)


def encode_bytes(values: Sequence[str | bytes]) -> bytes:
    """BYTES tensor contents: each element as a 4-byte little-endian length and its (UTF-8) bytes."""
    parts = []
    for value in values:
        data = value.encode() if isinstance(value, str) else value
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def decode_first_bytes(raw: bytes) -> bytes:
    """The first element of a BYTES tensor."""
    if len(raw) < 4:
        return b""
    (length,) = _BYTES_LENGTH(raw)
    return raw[4 : 4 + length]


def decode_first_int(raw: bytes, datatype: str) -> int:
    """The first element of an integer tensor."""
    return int(_FIRST_VALUE[datatype](raw)[0])


class RequestBuilder:
    """Accumulates input tensors of one ModelInferRequest (batch size 1: every shape starts with 1)."""

    def __init__(self, interface: ModelInterface, request_id: str) -> None:
        self.interface = interface
        self.message = service_pb2.ModelInferRequest(model_name=interface.name, id=request_id)
        self.message.parameters[EMPTY_FINAL_PARAMETER].bool_param = True

    def scalar(self, name: str, value: float | int | bool, param: str | None = None) -> None:
        """Add a [1, 1] tensor of the declared type; a value it cannot hold is a 400 naming `param`."""
        datatype = self.interface.inputs[name]
        if datatype == "UINT64":
            value = int(value) % (1 << 64)  # OpenAI seeds are signed 64-bit; Triton's are unsigned
        elif datatype == "FP32" and not fp32_exact_enough(value):
            raise InvalidRequestError(
                f"{value!r} cannot travel as the 32-bit float of the model's input '{name}': use 0, or a finite "
                f"value from {FP32_SMALLEST_NORMAL:.3g} to {FP32_MAX:.3g} in magnitude",
                param=param,
                code="invalid_value",
            )
        try:
            packed = struct.pack("<" + _STRUCT_CODES[datatype], value)
        except (struct.error, OverflowError) as exc:
            raise InvalidRequestError(
                f"{value} is out of range for the model's {datatype} input '{name}'", param=param
            ) from exc
        self._add(name, datatype, [1, 1], packed)

    def strings(self, name: str, values: Sequence[str]) -> None:
        """Add a [1, N] BYTES tensor."""
        self._add(name, "BYTES", [1, len(values)], encode_bytes(values))

    def byte_strings(self, name: str, values: Sequence[bytes]) -> None:
        """Add a [1, N] BYTES tensor of byte strings as they are."""
        self._add(name, "BYTES", [1, len(values)], encode_bytes(values))

    def int32_array(self, name: str, values: Sequence[int]) -> None:
        """Add a [1, N] INT32 tensor."""
        self._add(name, "INT32", [1, len(values)], struct.pack(f"<{len(values)}i", *values))

    def word_list(self, name: str, words: Sequence[Sequence[int]]) -> None:
        """Add a [1, 2, L] INT32 word list: flat ids, then cumulative end offsets padded with -1."""
        flat = [token for word in words if word for token in word]
        offsets: list[int] = []
        for word in words:
            if word:
                offsets.append((offsets[-1] if offsets else 0) + len(word))
        width = max(len(flat), 1)
        flat += [0] * (width - len(flat))
        offsets += [-1] * (width - len(offsets))
        self._add(name, "INT32", [1, 2, width], struct.pack(f"<{2 * width}i", *flat, *offsets))

    def raw_tensor(self, name: str, datatype: str, shape: Sequence[int], contents: bytes) -> None:
        """Add a tensor whose contents are already in wire layout (for example an adapter's FP16 weights)."""
        self._add(name, datatype, list(shape), contents)

    def request_outputs(self, names: Sequence[str]) -> None:
        """Ask for these outputs only (Triton returns every output when none are listed)."""
        for name in names:
            self.message.outputs.add(name=name)

    def _add(self, name: str, datatype: str, shape: list[int], contents: bytes) -> None:
        self.message.inputs.add(name=name, datatype=datatype, shape=shape)
        self.message.raw_input_contents.append(contents)


def add_sampling_inputs(builder: RequestBuilder, request: GenerationRequest) -> None:
    """Map the request's sampling fields onto the inputs the model declares; refuse what it cannot take."""
    interface = builder.interface
    sampling = request.sampling
    seed = sampling.seed
    if seed is None and sampling.top_k != 1 and interface.input_for("seed") is not None:
        # TensorRT-LLM samples with seed 0 when none is given, so every unseeded request would draw the same
        # text; OpenAI's unseeded requests differ from each other.
        seed = secrets.randbits(63)
    fields: dict[str, float | int | None] = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "seed": seed,
        "min_tokens": sampling.min_tokens,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
        "repetition_penalty": sampling.repetition_penalty,
    }
    for field, value in fields.items():
        if value is None:
            continue
        name = interface.input_for(field)
        if name is None:
            raise UnsupportedFeatureError(
                f"'{field}' is not supported by the upstream model '{interface.name}' (no matching input)",
                param=field,
            )
        builder.scalar(name, value, param=field)
    if sampling.ignore_eos:
        if "end_id" not in interface.inputs:
            raise UnsupportedFeatureError(
                f"'ignore_eos' needs an 'end_id' input, which model '{interface.name}' does not declare",
                param="ignore_eos",
            )
        builder.scalar("end_id", -1)  # no token has id -1, so generation runs to max_tokens
