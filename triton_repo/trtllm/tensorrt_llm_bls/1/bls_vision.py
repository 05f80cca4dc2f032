"""Images in the BLS: the inputs that carry them, and the multimodal_encoders call between preprocessing and the
engine, wired as NVIDIA's multimodal ensemble wires those steps (docs/multimodal.md).

Unlike NVIDIA's BLS, a request without images skips the encoder (NVIDIA's encoder refuses such a request for the
prompt-table families), so one deployment serves text-only and image requests alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import triton_python_backend_utils as pb_utils

# client input -> preprocessing input
IMAGE_INPUTS = {"image_url_input": "IMAGE_URL", "image_bytes_input": "IMAGE_BYTES"}
# client input -> encoder input (pixel values the client processed itself)
PROCESSED_IMAGE_INPUT = ("image_input", "IMAGE")
# preprocessing output -> encoder input
VISION_OUTPUTS = {
    "PIXEL_VALUES": "pixel_values",
    "IMAGE_SIZES": "image_sizes",
    "ASPECT_RATIO_IDS": "aspect_ratio_ids",
    "ASPECT_RATIO_MASK": "aspect_ratio_mask",
    "CROSS_ATTENTION_MASK": "cross_attention_mask",
    "REQUEST_OUTPUT_LEN": "max_tokens",
}
# encoder output -> tensorrt_llm input
ENCODER_OUTPUTS = {
    "OUT_PROMPT_EMBEDDING_TABLE": "prompt_embedding_table",
    "OUT_PROMPT_VOCAB_SIZE": "prompt_vocab_size",
    "ENCODER_INPUT_FEATURES": "encoder_input_features",
    "ENCODER_OUTPUT_LENGTHS": "encoder_output_lengths",
    "CROSS_ATTENTION_MASK": "cross_attention_mask",
    "SKIP_CROSS_ATTN_BLOCKS": "skip_cross_attn_blocks",
}


def renamed(response: Any, names: dict[str, str]) -> list[Any]:
    """The response's tensors under their new names, through DLPack (the encoder's may live on the GPU)."""
    tensors = []
    for old, new in names.items():
        tensor = pb_utils.get_output_tensor_by_name(response, old)
        if tensor is not None:
            tensors.append(pb_utils.Tensor.from_dlpack(new, tensor.to_dlpack()))
    return tensors


def encode_images(
    encoders: str,
    preprocessed: Any,
    processed_image: Any,
    request_id: str,
    run: Callable[[str, Any], Any],
) -> list[Any]:
    """The engine's image inputs (prompt table, or mllama's encoder features) from the encoder's answer."""
    inputs = renamed(preprocessed, VISION_OUTPUTS)
    if processed_image is not None:
        inputs.append(pb_utils.Tensor(PROCESSED_IMAGE_INPUT[1], processed_image))
    request = pb_utils.InferenceRequest(
        model_name=encoders, inputs=inputs, requested_output_names=list(ENCODER_OUTPUTS), request_id=request_id
    )
    return renamed(run(encoders, request), ENCODER_OUTPUTS)
