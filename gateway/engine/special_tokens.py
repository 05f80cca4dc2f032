"""Special tokens in the text of an ensemble or BLS upstream, and the direct call that keeps them.

NVIDIA's postprocessing decodes with `skip_special_tokens` (true unless its config says `false`), so the text of
an ensemble or BLS has no special tokens: Mistral's `[TOOL_CALLS]` or Llama's `<|python_tag|>` never reach a
tool-call parser, and calls come back as content. A request whose parsers need such markers
(`GenerationRequest.keep_special_tokens`) then goes to the engine model (`tensorrt_llm`) of the same Triton,
with token ids, and the gateway detokenizes it with special tokens kept, as in direct mode.
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import model_config_pb2

from gateway.engine.codecs import TokenCodec, codec_for, config_parameter
from gateway.errors import ConfigurationError

NVIDIA_POSTPROCESSING = "postprocessing"  # the model NVIDIA's BLS calls for its text
_FALSE_WORDS = frozenset({"false", "0", "f", "n", "no"})


def postprocessing_model(config: model_config_pb2.ModelConfig) -> str:
    """The model that writes an upstream's text: the ensemble step that produces `text_output`, else (a BLS)
    NVIDIA's `postprocessing`."""
    for step in config.ensemble_scheduling.step:
        if "text_output" in step.output_map.values():
            return step.model_name
    return NVIDIA_POSTPROCESSING


def skips_special_tokens(postprocessing: model_config_pb2.ModelConfig) -> bool:
    """Whether a postprocessing model drops special tokens: unless its `skip_special_tokens` is false (unset or
    unfilled means true, as in NVIDIA's model)."""
    return config_parameter(postprocessing, "skip_special_tokens").lower() not in _FALSE_WORDS


def marker_codec(
    engine_config: model_config_pb2.ModelConfig, tokenizer: Any, **options: Any
) -> tuple[TokenCodec | None, str]:
    """The direct codec for the engine model (`options` as `codec_for` takes them), or None and why not."""
    try:
        codec = codec_for(engine_config, tokenizer, **options)
    except ConfigurationError as exc:
        return None, str(exc)
    if not isinstance(codec, TokenCodec):
        return None, f"model '{engine_config.name}' does not take token ids"
    return codec, ""
