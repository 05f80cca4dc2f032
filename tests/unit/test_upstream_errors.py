"""Triton's error messages become the right gateway errors."""

from __future__ import annotations

import pytest

from gateway.engine.upstream_errors import translate_stream_error
from gateway.errors import UpstreamError, UpstreamRejectedError, UpstreamUnavailableError


@pytest.mark.parametrize(
    ("message", "kind", "status"),
    [
        ("[request id: abc] unexpected shape for input 'max_tokens' for model 'ensemble'", UpstreamRejectedError, 400),
        ("in ensemble 'ensemble', temperature must be >= 0, got -1", UpstreamRejectedError, 400),
        ("in ensemble 'ensemble', forward pass failed: IndexError('list index out of range')", UpstreamError, 500),
        ("Request for unknown model: 'ensemble' is not found", UpstreamUnavailableError, 503),
        ("something odd happened", UpstreamError, 500),
    ],
)
def test_stream_errors_are_classified(message: str, kind: type[UpstreamError], status: int) -> None:
    error = translate_stream_error(message)
    assert type(error) is kind and error.status == status
    assert "[request id" not in error.message


def test_unseeded_sampling_gets_a_fresh_seed_and_greedy_gets_none() -> None:
    """TensorRT-LLM treats a missing seed as 0: the gateway must draw one so unseeded requests differ."""
    from tritonclient.grpc import model_config_pb2

    from gateway.engine.base import GenerationRequest, SamplingParams
    from gateway.engine.tensors import ModelInterface, RequestBuilder, add_sampling_inputs

    config = model_config_pb2.ModelConfig(name="ensemble")
    declared = (
        ("seed", model_config_pb2.TYPE_UINT64),
        ("top_k", model_config_pb2.TYPE_INT32),
        ("top_p", model_config_pb2.TYPE_FP32),
    )
    for name, data_type in declared:
        config.input.add(name=name, data_type=data_type, dims=[1])
    interface = ModelInterface.from_config(config)

    def seeds(sampling: SamplingParams) -> list[bytes]:
        builder = RequestBuilder(interface, "r")
        add_sampling_inputs(builder, GenerationRequest("r", "p", 4, False, sampling))
        names = [i.name for i in builder.message.inputs]
        return [raw for name, raw in zip(names, builder.message.raw_input_contents, strict=True) if name == "seed"]

    first, second = seeds(SamplingParams(top_p=1.0)), seeds(SamplingParams(top_p=1.0))
    assert len(first) == 1 and first != second
    assert seeds(SamplingParams(top_k=1)) == []
    assert seeds(SamplingParams(top_p=1.0, seed=42)) == [(42).to_bytes(8, "little")]
