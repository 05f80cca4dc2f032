"""`trtllm-gateway repo`: fill `triton_repo/trtllm` for a TensorRT-LLM engine, ready for tritonserver.

The values come from the engine's config.json (batch size, beam width, logits type, world size) and from what the
gateway needs (decoupled streaming, `exclude_input_in_output`, accumulated BLS text, and special tokens kept by
postprocessing when the tool-call or reasoning parser reads markers that are special tokens, such as Mistral's
`[TOOL_CALLS]`). Paths are written as the Triton container sees them (`ContainerPaths`), since that is where the
backend opens them. A vision model (`FillOptions.vision`) gets the multimodal templates too (repo_vision.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from gateway.core.model_parsers import resolve_parsers, special_markers
from gateway.core.tokens import load_tokenizer
from gateway.deploy import repo_template
from gateway.deploy.engine_config import EngineConfig, read_engine_config
from gateway.deploy.repo_vision import ENCODER_MODEL, VisionOptions, install_encoder_code, vision_values
from gateway.deploy.tokenizer_info import FILE_NAME, write_tokenizer_info
from gateway.devstack.repository import MULTIMODAL, triton_repo_root
from gateway.errors import ConfigurationError

MODELS = ("ensemble", "preprocessing", "postprocessing", "tensorrt_llm", "tensorrt_llm_bls")
# Look optional (a `parameters` block) but the backend refuses to load without them.
REQUIRED = {"tensorrt_llm": frozenset({"batching_strategy", "engine_dir", "max_beam_width"})}
# What the gateway relies on; a --fill that changes them is refused.
FORCED = {
    "tensorrt_llm": {"exclude_input_in_output": "true", "decoupled_mode": "true"},
    "tensorrt_llm_bls": {"decoupled_mode": "true"},
}


@dataclass(frozen=True)
class ContainerPaths:
    """Where the Triton container mounts the repository, the engine and the tokenizer."""

    repository: PurePosixPath = field(default=PurePosixPath("/models"))
    engine: PurePosixPath = field(default=PurePosixPath("/engines"))
    tokenizer: PurePosixPath = field(default=PurePosixPath("/tokenizer"))


@dataclass(frozen=True)
class FillOptions:
    """What `trtllm-gateway repo` was asked for."""

    engine_dir: Path
    tokenizer_dir: Path
    output: Path
    container: ContainerPaths = field(default_factory=ContainerPaths)
    max_batch_size: int | None = None  # default: the engine's
    kv_cache_free_gpu_mem_fraction: float = 0.9
    enable_kv_cache_reuse: bool = True
    guided_decoding: bool = True
    add_special_tokens: bool = False
    tool_call_parser: str = "auto"  # the parsers the gateway will use (as its flags): their markers must survive
    reasoning_parser: str = "auto"
    force: bool = False
    fills: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # model -> NVIDIA-style key:value
    vision: VisionOptions | None = None  # a vision model: its vision engine and encoder code


@dataclass(frozen=True)
class FilledRepository:
    """The result: where it is, what engine it serves, and whether xgrammar checked the tokenizer file."""

    path: Path
    engine: EngineConfig
    options: FillOptions
    tokenizer_info_checked: bool | None  # None: guided decoding off
    special_markers: list[str] = field(default_factory=list)  # kept by postprocessing (skip_special_tokens false)


def flag(value: bool) -> str:
    """Triton's spelling of a boolean parameter."""
    return "true" if value else "false"


def parser_special_markers(options: FillOptions) -> list[str]:
    """The markers of the parsers the gateway will use with this tokenizer that are special tokens of it."""
    tokenizer = load_tokenizer(options.tokenizer_dir)
    template = str(getattr(tokenizer, "chat_template", "") or "")
    tool_parser, reasoning_parser = resolve_parsers(options.tool_call_parser, options.reasoning_parser, template)
    return sorted(special_markers(tokenizer, tool_parser, reasoning_parser))


def placeholder_values(
    engine: EngineConfig, options: FillOptions, keep_special_tokens: bool = False
) -> dict[str, dict[str, str]]:
    """model -> placeholder values, before the user's --fill lines (`keep_special_tokens`: in postprocessing)."""
    batch = options.max_batch_size or engine.max_batch_size
    if batch > engine.max_batch_size:
        raise ConfigurationError(
            f"--max-batch-size {batch} exceeds the engine's max_batch_size {engine.max_batch_size}"
        )
    if not 0 < options.kv_cache_free_gpu_mem_fraction <= 1:
        raise ConfigurationError("--kv-cache-free-gpu-mem-fraction must be in (0, 1]")
    paths = options.container
    shared = {
        "triton_max_batch_size": str(batch),
        "logits_datatype": engine.logits_datatype(),
        "tokenizer_dir": str(paths.tokenizer),
        "max_queue_delay_microseconds": "0",
        "max_queue_size": "0",
    }
    engine_values = {
        "triton_backend": "tensorrtllm",
        "decoupled_mode": "true",
        "max_beam_width": str(engine.max_beam_width),
        "batching_strategy": "inflight_fused_batching",
        "engine_dir": str(paths.engine),
        "exclude_input_in_output": "true",
        "encoder_input_features_data_type": engine.dtype_triton(),
        "prompt_embedding_table_data_type": "TYPE_FP16",  # the ensemble and the BLS declare FP16 tables
        "kv_cache_free_gpu_mem_fraction": f"{options.kv_cache_free_gpu_mem_fraction:g}",
        "enable_kv_cache_reuse": flag(options.enable_kv_cache_reuse),
    }
    if options.guided_decoding:
        engine_values["guided_decoding_backend"] = "xgrammar"
        engine_values["xgrammar_tokenizer_info_path"] = str(paths.repository / "tensorrt_llm" / FILE_NAME)
    values = {
        "ensemble": shared,
        "preprocessing": shared
        | {"add_special_tokens": flag(options.add_special_tokens)}
        | {"preprocessing_instance_count": "1"},
        # One instance keeps a stream's chunks in order (tensorrtllm_backend #614).
        "postprocessing": shared
        | {"skip_special_tokens": flag(not keep_special_tokens), "postprocessing_instance_count": "1"},
        "tensorrt_llm": shared | engine_values,
        "tensorrt_llm_bls": shared
        | {
            "decoupled_mode": "true",
            "accumulate_tokens": "true",
            "bls_instance_count": "1",
            "prompt_embedding_table_data_type": "TYPE_FP16",
            "tensorrt_llm_model_name": "tensorrt_llm",
            "tensorrt_llm_draft_model_name": "",
            "multimodal_encoders_name": "",
            # exec(decoupled=True), as NVIDIA's; "--fill tensorrt_llm_bls engine_grpc_url:HOST:PORT" takes the
            # gRPC route (triton_repo/README.md, Known defects), which needs tritonclient[grpc] in the container.
            "engine_grpc_url": "",
        },
    }
    if options.vision is not None:
        added = vision_values(options.vision, engine, paths.engine, paths.tokenizer)
        values[ENCODER_MODEL] = shared.copy()
        for model, more in added.items():
            values[model] = values[model] | more
    return values


def template_folder(model: str, vision: bool) -> Path:
    """Where a model's template is: the multimodal one replaces (or adds) it for a vision model."""
    multimodal = triton_repo_root() / "trtllm" / MULTIMODAL / model
    return multimodal if vision and multimodal.is_dir() else triton_repo_root() / "trtllm" / model


def _merge_fills(model: str, text: str, values: dict[str, str], fills: Mapping[str, str]) -> dict[str, str]:
    repo_template.check_known(text, fills, model)
    for key, wanted in FORCED.get(model, {}).items():
        if key in fills and fills[key].lower() != wanted:
            raise ConfigurationError(f"{model}: {key} must be {wanted} for the gateway, not {fills[key]!r}")
    merged = values | dict(fills)
    return {key: value for key, value in merged.items() if key in repo_template.placeholders(text)}


def fill_repository(options: FillOptions) -> FilledRepository:
    """Copy the templates to `options.output` and fill them; ConfigurationError names whatever is wrong."""
    models = (*MODELS, ENCODER_MODEL) if options.vision is not None else MODELS
    unknown = sorted(set(options.fills) - set(models))
    if unknown:
        raise ConfigurationError(f"--fill: no model {', '.join(unknown)} (models: {', '.join(models)})")
    engine = read_engine_config(options.engine_dir)
    if not options.tokenizer_dir.is_dir():
        raise ConfigurationError(f"--tokenizer-dir {options.tokenizer_dir} is not a folder")
    output = options.output
    if output.exists() and any(output.iterdir()):
        if not options.force:
            raise ConfigurationError(f"--output {output} is not empty (--force replaces it)")
        shutil.rmtree(output)
    markers = parser_special_markers(options)
    values = placeholder_values(engine, options, keep_special_tokens=bool(markers))
    rendered: dict[str, str] = {}
    vision = options.vision is not None
    for model in models:
        text = (template_folder(model, vision) / "config.pbtxt").read_text()
        merged = _merge_fills(model, text, values[model], options.fills.get(model, {}))
        rendered[model] = repo_template.render(text, merged, model, REQUIRED.get(model, frozenset()))
    ignore = shutil.ignore_patterns("__pycache__", MULTIMODAL)
    shutil.copytree(triton_repo_root() / "trtllm", output, dirs_exist_ok=True, ignore=ignore)
    if options.vision is not None:
        for model in ("ensemble", ENCODER_MODEL):
            shutil.rmtree(output / model, ignore_errors=True)
            shutil.copytree(template_folder(model, vision), output / model, ignore=ignore)
        install_encoder_code(options.vision, output)
    for model, text in rendered.items():
        (output / model / "config.pbtxt").write_text(text)
    checked = None
    if options.guided_decoding:
        checked = write_tokenizer_info(options.tokenizer_dir, output / "tensorrt_llm" / FILE_NAME, engine.vocab_size)
    return FilledRepository(output, engine, options, checked, markers)
