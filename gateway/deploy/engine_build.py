"""The `engine` extra: convert a Hugging Face checkpoint and build a TensorRT-LLM engine (`trtllm-build`).

The commands are NVIDIA's: `convert_checkpoint.py` of the model family (or `quantization/quantize.py` for the
quantisation formats that need calibration) from a TensorRT-LLM checkout's `examples/`, then `trtllm-build`.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import ConfigurationError

FAMILIES = ("llama", "qwen", "gemma", "phi", "gpt", "falcon", "mixtral")
# --quantization -> (uses quantize.py, its arguments); weight-only formats go through convert_checkpoint.py.
QUANTIZATIONS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "none": (False, ()),
    "int8_wo": (False, ("--use_weight_only", "--weight_only_precision", "int8")),
    "int4_wo": (False, ("--use_weight_only", "--weight_only_precision", "int4")),
    "fp8": (True, ("--qformat", "fp8", "--kv_cache_dtype", "fp8")),
    "int4_awq": (True, ("--qformat", "int4_awq", "--awq_block_size", "128")),
    "int8_sq": (True, ("--qformat", "int8_sq")),
}


@dataclass(frozen=True)
class EngineBuild:
    """What to build: from which checkpoint, with which parallelism, limits and quantisation."""

    hf_model_dir: Path
    checkpoint_dir: Path
    engine_dir: Path
    examples_dir: Path
    family: str = "llama"
    dtype: str = "float16"
    quantization: str = "none"
    tp_size: int = 1
    pp_size: int = 1
    max_batch_size: int = 64
    max_input_len: int = 4096
    max_seq_len: int = 8192
    max_beam_width: int = 1
    gather_generation_logits: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigurationError(f"--model-family {self.family!r} is not one of {', '.join(FAMILIES)}")
        if self.quantization not in QUANTIZATIONS:
            raise ConfigurationError(f"--quantization {self.quantization!r} is not one of {', '.join(QUANTIZATIONS)}")
        if self.dtype not in ("float16", "bfloat16"):
            raise ConfigurationError(f"--dtype {self.dtype!r} is not float16 or bfloat16")
        for name in ("tp_size", "pp_size", "max_batch_size", "max_input_len", "max_seq_len", "max_beam_width"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_input_len > self.max_seq_len:
            raise ConfigurationError("--max-input-len must not exceed --max-seq-len")


def convert_command(build: EngineBuild) -> list[str]:
    """The checkpoint conversion (or calibration + quantisation) command."""
    quantize, extra = QUANTIZATIONS[build.quantization]
    if quantize:
        script = build.examples_dir / "quantization" / "quantize.py"
    else:
        script = build.examples_dir / "models" / "core" / build.family / "convert_checkpoint.py"
    return [
        "python3", str(script),
        "--model_dir", str(build.hf_model_dir),
        "--output_dir", str(build.checkpoint_dir),
        "--dtype", build.dtype,
        "--tp_size", str(build.tp_size),
        "--pp_size", str(build.pp_size),
        *extra,
    ]  # fmt: skip


def build_command(build: EngineBuild) -> list[str]:
    """The `trtllm-build` command; the engine's config.json then tells `repo` how to fill the templates."""
    command = [
        "trtllm-build",
        "--checkpoint_dir", str(build.checkpoint_dir),
        "--output_dir", str(build.engine_dir),
        "--gemm_plugin", "auto",
        "--max_batch_size", str(build.max_batch_size),
        "--max_input_len", str(build.max_input_len),
        "--max_seq_len", str(build.max_seq_len),
        "--max_beam_width", str(build.max_beam_width),
        # In-flight batching needs the paged KV cache and packed inputs; paged context FMHA enables KV reuse.
        "--kv_cache_type", "paged",
        "--remove_input_padding", "enable",
        "--use_paged_context_fmha", "enable",
    ]  # fmt: skip
    if build.gather_generation_logits:
        command.append("--gather_generation_logits")
    return command


def engine_extra_installed() -> bool:
    """Whether the `engine` extra (tensorrt-llm, which brings `trtllm-build`) is installed."""
    return importlib.util.find_spec("tensorrt_llm") is not None and shutil.which("trtllm-build") is not None


def run_build(build: EngineBuild) -> None:
    """Run both commands; ConfigurationError when the extra or a script is missing, or a step fails."""
    if not engine_extra_installed():
        raise ConfigurationError(
            "--hf-model-dir: building an engine needs the engine extra (pip install 'trtllm-gateway[engine]', "
            "on a machine with an NVIDIA GPU); --print-build-commands shows the commands without running them"
        )
    for command in (convert_command(build), build_command(build)):
        if command[0] == "python3" and not Path(command[1]).is_file():
            raise ConfigurationError(f"--trtllm-examples: {command[1]} does not exist")
        if subprocess.run(command, check=False).returncode != 0:
            raise ConfigurationError(f"engine build step failed: {' '.join(command)}")
