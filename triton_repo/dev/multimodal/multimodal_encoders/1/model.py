"""CPU stand-in for NVIDIA's `multimodal_encoders` model (Python backend): NVIDIA's tensors, no vision weights.

It answers the prompt-table families' way: `pixel_values` (or `IMAGE`) `[batch, images, C, H, W]` in,
`OUT_PROMPT_EMBEDDING_TABLE` `[batch, images x features, hidden]` and `OUT_PROMPT_VOCAB_SIZE` out. Each image's
embedding is made from its pixels, deterministically: `features_per_image` rows of the LLM's hidden size, row r
holding the image's mean colour in columns 0-2 (the dev preprocessing's pixel values are in [0, 1]), 1.0 in
column 3 on the image's first row (so that images next to each other stay apart), and the mean colour of the
image's r-th horizontal band in columns 4-6. The dev engine reads the colours back (dev_engine_images), so what
it says depends on the images. Like NVIDIA's model for these families, a request without pixel values is an
error. Parameter `multimodal_model_path`: a folder whose config.json has `builder_config.model_type` and
`dev_encoder: {features_per_image, hidden_size}` (gateway/devstack/dev_vision.py writes it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from dev_encoder_embedding import embed


class TritonPythonModel:
    """The stand-in encoder."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the dev vision engine's config."""
        config = json.loads(args["model_config"])
        folder = config["parameters"]["multimodal_model_path"]["string_value"]
        engine = json.loads((Path(folder) / "config.json").read_text())
        self.family = engine["builder_config"]["model_type"]
        self.features = int(engine["dev_encoder"]["features_per_image"])
        self.hidden = int(engine["dev_encoder"]["hidden_size"])
        output = pb_utils.get_output_config_by_name(config, "OUT_PROMPT_EMBEDDING_TABLE")
        self.table_type = pb_utils.triton_string_to_numpy(output["data_type"])

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request."""
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._encode(request)))
            except Exception as exc:  # one bad request must not fail the batch
                error = pb_utils.TritonError(f"multimodal_encoders: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        return responses

    def _encode(self, request: Any) -> list[Any]:
        tensor = pb_utils.get_input_tensor_by_name(request, "pixel_values")
        if tensor is None:
            tensor = pb_utils.get_input_tensor_by_name(request, "IMAGE")
        if tensor is None:
            raise ValueError("There is no preprocessed image tensor to encode")  # NVIDIA's words for this case
        pixels = tensor.as_numpy()  # [batch, images, C, H, W]
        tables = [embed(item, self.features, self.hidden) for item in pixels]
        table = np.stack(tables).astype(self.table_type)
        sizes = np.array([[rows.shape[0]] for rows in tables], np.int32)
        return [
            pb_utils.Tensor("OUT_PROMPT_EMBEDDING_TABLE", table),
            pb_utils.Tensor("OUT_PROMPT_VOCAB_SIZE", sizes),
        ]
