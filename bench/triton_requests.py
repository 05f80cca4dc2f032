"""Requests of the direct client, built by the gateway's own request code so that the floor cannot drift from it.

A chat request of the load generator's shape (one user message, `max_tokens`, `stream`, default sampling) goes
through the gateway's sampling defaults (`sampling_of(...).for_engine()`) and the upstream codec the gateway picks
for the model (`codec_for(...).open`), exactly as a gateway worker builds it: the same tensors, parameters and
requested outputs.
"""

from __future__ import annotations

import base64
from typing import Any

import grpc
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from bench.prompts import Prompt
from gateway.engine.base import GenerationRequest
from gateway.engine.codecs import UpstreamCodec, codec_for
from gateway.protocols.chat_completions.request import ChatCompletionRequest
from gateway.protocols.openai_shared import sampling_of


def model_config(grpc_url: str, model: str) -> model_config_pb2.ModelConfig:
    """Fetch a model's config from Triton."""
    with grpc.insecure_channel(grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        return stub.ModelConfig(service_pb2.ModelConfigRequest(name=model), timeout=10).config


def upstream_codec(config: model_config_pb2.ModelConfig, tokenizer: Any | None) -> UpstreamCodec:
    """The codec a gateway with default flags picks for this model (direct mode needs the tokenizer)."""
    return codec_for(config, tokenizer)


def build_request(codec: UpstreamCodec, prompt: Prompt, max_tokens: int, stream: bool) -> service_pb2.ModelInferRequest:
    """The Triton request the gateway sends for a chat request with this prompt and token budget."""
    body = ChatCompletionRequest.model_validate(
        {
            "model": "bench",
            "messages": [{"role": "user", "content": prompt.user_text}],
            "max_tokens": max_tokens,
            "stream": stream,
        }
    )
    request = GenerationRequest(
        request_id="bench",
        prompt=prompt.rendered,
        max_tokens=max_tokens,
        stream=stream,
        sampling=sampling_of(body).for_engine(),
    )
    message, _decoder = codec.open(request)
    return message


def encoded_requests(
    grpc_url: str, model: str, prompts: list[Prompt], max_tokens: int, stream: bool, tokenizer: Any | None
) -> list[str]:
    """Base64 of each prompt's request (what the load generator's spec carries)."""
    codec = upstream_codec(model_config(grpc_url, model), tokenizer)
    return [base64.b64encode(build_request(codec, p, max_tokens, stream).SerializeToString()).decode() for p in prompts]
