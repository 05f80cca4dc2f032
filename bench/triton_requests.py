"""Requests of the direct client: the same Triton inputs the gateway sends, built from the model's declared config.

The direct floor must make Triton do the same work as a gateway request, so it sends what the gateway's codecs
send for a chat request with default sampling: the (chat-rendered) prompt or its ids, the token budget, the stream
flag, `exclude_input_in_output`, the token-count outputs when declared, and `top_p=1.0`.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import grpc
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from bench.prompts import Prompt

_WIRE = {
    model_config_pb2.TYPE_BOOL: ("BOOL", "?"),
    model_config_pb2.TYPE_INT32: ("INT32", "i"),
    model_config_pb2.TYPE_UINT64: ("UINT64", "Q"),
    model_config_pb2.TYPE_FP32: ("FP32", "f"),
}


def model_config(grpc_url: str, model: str) -> model_config_pb2.ModelConfig:
    """Fetch a model's config from Triton."""
    with grpc.insecure_channel(grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        return stub.ModelConfig(service_pb2.ModelConfigRequest(name=model), timeout=10).config


class _Builder:
    def __init__(self, config: model_config_pb2.ModelConfig) -> None:
        self.inputs = {i.name: i.data_type for i in config.input}
        self.outputs = {o.name for o in config.output}
        self.message = service_pb2.ModelInferRequest(model_name=config.name)
        self.message.parameters["triton_enable_empty_final_response"].bool_param = True

    def scalar(self, name: str, value: Any) -> None:
        if name not in self.inputs:
            return
        datatype, code = _WIRE[self.inputs[name]]
        self._add(name, datatype, [1, 1], struct.pack("<" + code, value))

    def text(self, name: str, value: str) -> None:
        data = value.encode()
        self._add(name, "BYTES", [1, 1], struct.pack("<I", len(data)) + data)

    def ids(self, name: str, values: tuple[int, ...]) -> None:
        self._add(name, "INT32", [1, len(values)], struct.pack(f"<{len(values)}i", *values))

    def output(self, name: str) -> None:
        self.message.outputs.add(name=name)

    def _add(self, name: str, datatype: str, shape: list[int], contents: bytes) -> None:
        self.message.inputs.add(name=name, datatype=datatype, shape=shape)
        self.message.raw_input_contents.append(contents)


def build_request(
    config: model_config_pb2.ModelConfig, prompt: Prompt, max_tokens: int, stream: bool, eos_id: int, pad_id: int
) -> service_pb2.ModelInferRequest:
    """One request for the ensemble, the BLS model, or `tensorrt_llm` (token ids)."""
    builder = _Builder(config)
    if "input_ids" in builder.inputs:
        builder.ids("input_ids", prompt.ids)
        builder.scalar("input_lengths", len(prompt.ids))
        builder.scalar("request_output_len", max_tokens)
        builder.scalar("streaming", stream)
        builder.scalar("exclude_input_in_output", True)
        builder.scalar("end_id", eos_id)
        builder.scalar("pad_id", pad_id)
        builder.scalar("runtime_top_p", 1.0)
        builder.output("output_ids")
        builder.output("sequence_length")
        return builder.message
    builder.text("text_input", prompt.rendered)
    builder.scalar("max_tokens", max_tokens)
    builder.scalar("stream", stream)
    builder.scalar("exclude_input_in_output", True)
    outputs = ["text_output"]
    for count in ("num_input_tokens", "num_output_tokens"):
        if f"return_{count}" in builder.inputs and count in builder.outputs:
            builder.scalar(f"return_{count}", True)
            outputs.append(count)
    builder.scalar("top_p", 1.0)
    for name in outputs:
        builder.output(name)
    return builder.message


def encoded_requests(
    grpc_url: str, model: str, prompts: list[Prompt], max_tokens: int, stream: bool, eos_id: int, pad_id: int
) -> list[str]:
    """Base64 of each prompt's request (what the load generator's spec carries)."""
    config = model_config(grpc_url, model)
    return [
        base64.b64encode(build_request(config, p, max_tokens, stream, eos_id, pad_id).SerializeToString()).decode()
        for p in prompts
    ]
