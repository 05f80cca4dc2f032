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
        ("in ensemble 'ensemble', multimodal_encoders: There is no preprocessed image tensor to encode",
         UpstreamRejectedError, 400),
    ],
)  # fmt: skip
def test_stream_errors_are_classified(message: str, kind: type[UpstreamError], status: int) -> None:
    error = translate_stream_error(message)
    assert type(error) is kind and error.status == status
    assert "[request id" not in error.message


def test_a_text_only_request_to_a_multimodal_ensemble_says_what_to_do_instead() -> None:
    error = translate_stream_error("multimodal_encoders: There is no preprocessed image tensor to encode")
    assert "needs an image in every request" in error.message and "tensorrt_llm_bls" in error.message


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


TLLM_ASSERTION = (
    "[request id: 7] Encountered an error in forward function: [TensorRT-LLM][ERROR] "
    "tensorrt_llm::common::TllmException: [TensorRT-LLM][ERROR] Assertion failed: d == a + length "
    "(/app/tensorrt_llm/cpp/tensorrt_llm/plugins/gptAttentionCommon/gptAttentionCommon.cpp:326)\n"
    "1       0x7f32dd086fbf /opt/tritonserver/backends/tensorrtllm/libnvinfer_plugin_tensorrt_llm.so.9(+0x37fbf) "
    "[0x7f32dd086fbf]\n2       0x7f32dd0e6c8a tensorrt_llm::plugins::GPTAttentionPluginCommon::"
    "GPTAttentionPluginCommon(void const*, unsigned long) + 762"
)
PYTHON_BACKEND = (
    "Failed to process the request(s) for model 'preprocessing_0_0', message: ValueError: bad stop words\n\n"
    "At:\n  /models/preprocessing/1/model.py(245): execute\n"
)
TRACEBACK = (
    'Traceback (most recent call last):\n  File "/models/tensorrt_llm_bls/1/lib/decode.py", line 12, in run\n'
    '    raise RuntimeError("engine down")\nRuntimeError: engine down'
)
GRPC_PEER = "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.1.2.3:8001: Failed to connect"


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (TLLM_ASSERTION, "Encountered an error in forward function: Assertion failed: d == a + length"),
        (PYTHON_BACKEND, "Failed to process the request(s) for model 'preprocessing_0_0', message: ValueError: bad "
                         "stop words"),
        (TRACEBACK, "RuntimeError: engine down"),
        (GRPC_PEER, "failed to connect to all addresses; last error: UNKNOWN: Failed to connect"),
        ("input/output mismatch at 10.0.0.5:8001 in request.cpp:123", "input/output mismatch at in"),
    ],
)  # fmt: skip
def test_clients_see_the_cause_without_paths_traces_or_addresses(
    message: str, shown: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = translate_stream_error(message)
    assert error.message.endswith(": " + shown)
    for leak in ("/app/", "/models/", ".cpp", ".py", "0x7f", "10.1.2.3", "10.0.0.5", "Traceback", "\n"):
        assert leak not in error.message
    assert message.removeprefix("[request id: 7] ") in caplog.text  # the whole text is in the gateway's log


def test_a_plain_message_is_shown_unchanged_and_not_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    error = translate_stream_error("in ensemble 'ensemble', temperature must be >= 0, got -1")
    assert error.message == "Triton rejected the request: in ensemble 'ensemble', temperature must be >= 0, got -1"
    assert caplog.text == ""
