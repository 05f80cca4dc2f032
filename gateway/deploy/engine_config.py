"""What a TensorRT-LLM engine's `config.json` (written by `trtllm-build`) says about how to serve it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import ConfigurationError

# pretrained_config.dtype / logits_dtype -> Triton data type
TRITON_DATA_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16"}


@dataclass(frozen=True)
class EngineConfig:
    """The fields of an engine's config.json that the model repository depends on."""

    path: Path
    version: str
    architecture: str
    dtype: str
    logits_dtype: str
    max_batch_size: int
    max_beam_width: int
    max_input_len: int
    max_seq_len: int
    tensor_parallel: int
    pipeline_parallel: int
    context_parallel: int
    gather_generation_logits: bool
    gather_context_logits: bool
    vocab_size: int

    @property
    def world_size(self) -> int:
        """GPUs (MPI ranks) the engine needs: tp x pp x cp."""
        return self.tensor_parallel * self.pipeline_parallel * self.context_parallel

    def dtype_triton(self) -> str:
        """The Triton data type of the engine's activations."""
        return TRITON_DATA_TYPES[self.dtype]

    def logits_datatype(self) -> str:
        """The Triton data type of generation/context logits outputs."""
        return TRITON_DATA_TYPES[self.logits_dtype]


def _field(section: dict[str, Any], name: str, where: str, kind: type, default: Any = None) -> Any:
    value = section.get(name, default)
    if value is None:
        raise ConfigurationError(f"{where}.{name} is missing")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"{where}.{name} must be a positive integer, not {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise ConfigurationError(f"{where}.{name} must be true or false, not {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigurationError(f"{where}.{name} must be a string, not {value!r}")
    return value


def _section(document: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    section = document.get(name)
    if not isinstance(section, dict):
        raise ConfigurationError(f"{where}: {name} is missing (not an engine built by trtllm-build?)")
    return section


def read_engine_config(engine_dir: Path) -> EngineConfig:
    """Parse `engine_dir/config.json`; ConfigurationError naming the field on anything unusable."""
    path = engine_dir / "config.json"
    if not engine_dir.is_dir():
        raise ConfigurationError(f"--engine-dir {engine_dir} is not a folder")
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"--engine-dir {engine_dir} has no config.json (not a TensorRT-LLM engine)") from None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"{path} is not a JSON object")
    if "version" not in document:
        raise ConfigurationError(
            f"{path} has no version: an engine of the old builder API (TensorRT-LLM < 0.8); "
            "rebuild it with trtllm-build"
        )
    where = str(path)
    pretrained = _section(document, "pretrained_config", where)
    build = _section(document, "build_config", where)
    mapping = _section(pretrained, "mapping", f"{where}: pretrained_config")
    dtype = _field(pretrained, "dtype", "pretrained_config", str)
    logits_dtype = _field(pretrained, "logits_dtype", "pretrained_config", str, "float32")
    for name, value in (("dtype", dtype), ("logits_dtype", logits_dtype)):
        if value not in TRITON_DATA_TYPES:
            raise ConfigurationError(f"pretrained_config.{name} {value!r} is not one of {', '.join(TRITON_DATA_TYPES)}")
    config = EngineConfig(
        path=path,
        version=_field(document, "version", "config", str),
        architecture=_field(pretrained, "architecture", "pretrained_config", str),
        dtype=dtype,
        logits_dtype=logits_dtype,
        max_batch_size=_field(build, "max_batch_size", "build_config", int),
        max_beam_width=_field(build, "max_beam_width", "build_config", int, 1),
        max_input_len=_field(build, "max_input_len", "build_config", int),
        max_seq_len=_field(build, "max_seq_len", "build_config", int),
        tensor_parallel=_field(mapping, "tp_size", "pretrained_config.mapping", int, 1),
        pipeline_parallel=_field(mapping, "pp_size", "pretrained_config.mapping", int, 1),
        context_parallel=_field(mapping, "cp_size", "pretrained_config.mapping", int, 1),
        gather_generation_logits=_field(build, "gather_generation_logits", "build_config", bool, False),
        gather_context_logits=_field(build, "gather_context_logits", "build_config", bool, False),
        vocab_size=_field(pretrained, "vocab_size", "pretrained_config", int),
    )
    declared = mapping.get("world_size", config.world_size)
    if declared != config.world_size:
        raise ConfigurationError(
            f"pretrained_config.mapping.world_size {declared} is not tp_size x pp_size x cp_size = {config.world_size}"
        )
    ranks = [f"rank{rank}.engine" for rank in range(config.world_size)]
    missing = [name for name in ranks if not (engine_dir / name).is_file()]
    if missing:
        raise ConfigurationError(
            f"--engine-dir {engine_dir} lacks {', '.join(missing)} (world size {config.world_size})"
        )
    return config
