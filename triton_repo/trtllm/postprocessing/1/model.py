"""Triton Python model `postprocessing`: output ids -> text, one independent decode per response.

Deliberately stateless, like TensorRT-LLM's postprocessing: in streaming, each response's new tokens are
decoded alone, so a character whose bytes span two tokens becomes U+FFFD and SentencePiece word-initial spaces
can vanish. That is the production behaviour the gateway has to cope with; do not repair it here (the BLS
model's accumulate_tokens mode and the gateway's own detokenization are the fixes).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from transformers import AutoTokenizer

TRUE_WORDS = {"true", "1", "t", "y", "yes"}
FALSE_WORDS = {"false", "0", "f", "n", "no"}


def parameter(config: dict[str, Any], key: str) -> str | None:
    """A string parameter of the model config; None when missing, empty or an unfilled `${...}` placeholder."""
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return None if value == "" or value.startswith("${") else value


def bool_parameter(config: dict[str, Any], key: str, default: bool) -> bool:
    """A boolean parameter (true/false/1/0/yes/no/t/f/y/n); `default` when unset or unreadable."""
    value = parameter(config, key)
    if value is None:
        return default
    if value.lower() in TRUE_WORDS | FALSE_WORDS:
        return value.lower() in TRUE_WORDS
    pb_utils.Logger.log_warn(f"parameter {key}={value!r} is not a boolean; using {default}")
    return default


class TritonPythonModel:
    """Detokenizer step of the ensemble and of tensorrt_llm_bls."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the tokenizer named by the `tokenizer_dir` parameter."""
        config = json.loads(args["model_config"])
        tokenizer_dir = parameter(config, "tokenizer_dir")
        if tokenizer_dir is None:
            raise pb_utils.TritonModelException("postprocessing: the tokenizer_dir parameter is not set")
        self.skip_special_tokens = bool_parameter(config, "skip_special_tokens", default=True)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, legacy=False, trust_remote_code=True)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Decode every beam of every batch item of every request in one batch_decode call."""
        sequences: list[list[int]] = []
        bounds: list[tuple[int, int]] = []
        for request in requests:
            tokens = pb_utils.get_input_tensor_by_name(request, "TOKENS_BATCH").as_numpy()
            lengths = pb_utils.get_input_tensor_by_name(request, "SEQUENCE_LENGTH").as_numpy()
            start = len(sequences)
            for item_tokens, item_lengths in zip(tokens, lengths.reshape(tokens.shape[0], -1), strict=True):
                for beam_tokens, length in zip(item_tokens, item_lengths, strict=True):
                    sequences.append(beam_tokens[: max(int(length), 0)].tolist())
            bounds.append((start, len(sequences)))

        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=self.skip_special_tokens)
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor("OUTPUT", np.array([t.encode("utf-8") for t in texts[start:end]], dtype=np.object_))
                ]
            )
            for start, end in bounds
        ]
