"""`trtllm-gateway repo` for a vision model: the multimodal templates, filled for a vision engine.

As NVIDIA's docs do by hand (docs/multimodal.md): the multimodal ensemble replaces the text one, the
`multimodal_encoders` model joins (this project's config, NVIDIA's code: its `model.py` and `multimodal_utils.py`
of the container's TensorRT-LLM version, copied from `--multimodal-encoders-code`), preprocessing learns the vision
engine, the language engine's prompt-table size and the image processor, and the BLS names the encoder model.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from gateway.deploy.engine_config import EngineConfig
from gateway.errors import ConfigurationError

FAMILIES = ("llava", "vila", "blip2-opt", "blip2", "llava_onevision", "mllama")
# Families whose images become rows of a prompt table (the engine must be built with --max_multimodal_len).
TABLE_FAMILIES = frozenset(FAMILIES) - {"mllama"}
ENCODER_MODEL = "multimodal_encoders"
ENCODER_CODE = ("model.py", "multimodal_utils.py")


@dataclass(frozen=True)
class VisionOptions:
    """The vision parts of a fill: the vision engine, NVIDIA's encoder code, the image processor, images per
    request, and where the container sees the engine and the processor."""

    engine_dir: Path
    encoders_code: Path
    processor_dir: Path | None = None  # default: the tokenizer folder (a Hugging Face model folder has both)
    max_images: int = 1
    container_engine: PurePosixPath = field(default=PurePosixPath("/multimodal_engine"))
    container_processor: PurePosixPath | None = None  # default: the container's tokenizer folder


def vision_family(engine_dir: Path) -> str:
    """The family a vision engine's config.json names (`builder_config.model_type`)."""
    path = engine_dir / "config.json"
    try:
        family = json.loads(path.read_text())["builder_config"]["model_type"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"--multimodal-engine-dir: {path} does not name a vision family (builder_config.model_type): {exc}"
        ) from None
    if family not in FAMILIES:
        known = ", ".join(FAMILIES)
        raise ConfigurationError(f"--multimodal-engine-dir: vision family {family!r} is not one of {known}")
    return str(family)


def prompt_table_rows(engine: EngineConfig) -> int:
    """The language engine's `max_prompt_embedding_table_size` (`trtllm-build --max_multimodal_len`), 0 if none."""
    build = json.loads(engine.path.read_text()).get("build_config", {})
    return int(build.get("max_prompt_embedding_table_size") or 0)


def vision_values(
    vision: VisionOptions, engine: EngineConfig, container_engine: PurePosixPath, container_tokenizer: PurePosixPath
) -> dict[str, dict[str, str]]:
    """model -> the placeholder values a vision model adds (checked against the engines)."""
    family = vision_family(vision.engine_dir)
    if vision.max_images < 1:
        raise ConfigurationError("--max-images must be at least 1")
    rows = prompt_table_rows(engine)
    if family in TABLE_FAMILIES and rows < engine.max_batch_size * vision.max_images:
        raise ConfigurationError(
            f"the engine's max_prompt_embedding_table_size is {rows}: build it with trtllm-build "
            f"--max_multimodal_len = max batch size x features per image x images per request (--max-images)"
        )
    if not (vision.encoders_code / "model.py").is_file():
        raise ConfigurationError(
            f"--multimodal-encoders-code {vision.encoders_code} has no model.py: give NVIDIA's "
            "triton_backend/all_models/multimodal/multimodal_encoders/1 of the container's TensorRT-LLM version"
        )
    processor = vision.container_processor or container_tokenizer
    return {
        "preprocessing": {
            "multimodal_model_path": str(vision.container_engine),
            "engine_dir": str(container_engine),
            "hf_model_path": str(processor),
            "max_num_images": str(vision.max_images),
        },
        ENCODER_MODEL: {
            "multimodal_model_path": str(vision.container_engine),
            "hf_model_path": str(processor),
            "encoder_input_features_data_type": engine.dtype_triton(),
            "prompt_embedding_table_data_type": "TYPE_FP16",
        },
        "tensorrt_llm_bls": {"multimodal_encoders_name": ENCODER_MODEL},
    }


def install_encoder_code(vision: VisionOptions, output: Path) -> None:
    """Copy NVIDIA's encoder code into the filled `multimodal_encoders/1/`."""
    target = output / ENCODER_MODEL / "1"
    target.mkdir(parents=True, exist_ok=True)
    for name in ENCODER_CODE:
        source = vision.encoders_code / name
        if source.is_file():
            shutil.copy2(source, target / name)
