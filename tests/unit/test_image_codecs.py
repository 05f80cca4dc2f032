"""Images on the wire: which models take them (from their declared config) and the `image_url_input` tensor."""

from __future__ import annotations

import base64
import struct

import pytest
from tritonclient.grpc import model_config_pb2

from gateway.engine.base import EncodedImage, GenerationRequest
from gateway.engine.codecs import MANY_IMAGES, codec_for, image_capacity, image_set_id
from gateway.errors import UnsupportedFeatureError

TEXT = model_config_pb2.TYPE_STRING
INT = model_config_pb2.TYPE_INT32


def config(platform: str, image_dims: list[int] | None, **parameters: str) -> model_config_pb2.ModelConfig:
    made = model_config_pb2.ModelConfig(name="ensemble" if platform else "tensorrt_llm_bls", platform=platform)
    made.model_transaction_policy.decoupled = True
    made.input.add(name="text_input", data_type=TEXT, dims=[1])
    made.input.add(name="max_tokens", data_type=INT, dims=[1])
    if image_dims is not None:
        made.input.add(name="image_url_input", data_type=TEXT, dims=image_dims, optional=True)
        made.input.add(name="prompt_table_extra_id", data_type=model_config_pb2.TYPE_UINT64, dims=[1], optional=True)
    made.output.add(name="text_output", data_type=TEXT, dims=[-1])
    for key, value in parameters.items():
        made.parameters[key].string_value = value
    return made


@pytest.mark.parametrize(
    ("made", "capacity"),
    [
        (config("ensemble", None), 0),  # the text ensemble
        (config("ensemble", [-1]), MANY_IMAGES),  # the multimodal ensemble (TensorRT-LLM 1.x)
        (config("ensemble", [1]), 1),  # NVIDIA's up to v0.19: one URL per request
        (config("", [1]), 0),  # NVIDIA's BLS declares the inputs without an encoders model
        (config("", [1], multimodal_encoders_name="${multimodal_encoders_name}"), 0),  # unfilled
        (config("", [-1], multimodal_encoders_name="multimodal_encoders"), MANY_IMAGES),
    ],
)
def test_the_image_capacity_follows_the_declared_config(made: model_config_pb2.ModelConfig, capacity: int) -> None:
    assert image_capacity(made) == capacity
    assert codec_for(made, None).capabilities().max_images == capacity


def test_images_travel_as_data_urls_in_prompt_order() -> None:
    codec = codec_for(config("ensemble", [-1]), None)
    images = (EncodedImage(b"\x89PNG-red", "image/png", 1, 1), EncodedImage(b"\xff\xd8jpeg", "image/jpeg", 2, 2))
    message, _ = codec.open(GenerationRequest("r1", "<image> and <image>", 8, False, images=images))
    (tensor,) = [t for t in message.inputs if t.name == "image_url_input"]
    assert tensor.datatype == "BYTES" and list(tensor.shape) == [1, 2]
    raw = message.raw_input_contents[list(message.inputs).index(tensor)]
    values, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        values.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    assert values == [
        b"data:image/png;base64," + base64.b64encode(b"\x89PNG-red"),
        b"data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8jpeg"),
    ]


def test_a_text_request_sends_no_image_tensor_and_an_image_request_to_a_text_model_fails() -> None:
    message, _ = codec_for(config("ensemble", [-1]), None).open(GenerationRequest("r1", "hi", 8, False))
    assert "image_url_input" not in [t.name for t in message.inputs]
    image = EncodedImage(b"x", "image/png", 1, 1)
    with pytest.raises(UnsupportedFeatureError):
        codec_for(config("ensemble", None), None).open(GenerationRequest("r2", "<image>", 8, False, images=(image,)))


def test_the_images_name_their_prompt_table_rows_for_kv_cache_reuse() -> None:
    red, blue = EncodedImage(b"red", "image/png", 1, 1), EncodedImage(b"blue", "image/png", 1, 1)
    assert image_set_id([red, blue]) == image_set_id([EncodedImage(b"red", "image/png", 9, 9), blue])
    assert len({image_set_id([red, blue]), image_set_id([blue, red]), image_set_id([red])}) == 3
    assert 1 <= image_set_id([red]) < 2**63
    message, _ = codec_for(config("ensemble", [-1]), None).open(
        GenerationRequest("r", "<image>", 8, False, images=(red,))
    )
    (tensor,) = [t for t in message.inputs if t.name == "prompt_table_extra_id"]
    raw = message.raw_input_contents[list(message.inputs).index(tensor)]
    assert struct.unpack("<Q", raw)[0] == image_set_id([red])
    text, _ = codec_for(config("ensemble", [-1]), None).open(GenerationRequest("t", "hi", 8, False))
    assert "prompt_table_extra_id" not in [t.name for t in text.inputs]
