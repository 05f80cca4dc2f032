"""Arguments and handler of `trtllm-gateway repo` (fill the TensorRT-LLM model repository; optionally build)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path, PurePosixPath

from gateway.deploy.engine_build import FAMILIES, QUANTIZATIONS, EngineBuild, build_command, convert_command, run_build
from gateway.deploy.repo_fill import MODELS, ContainerPaths, FillOptions, fill_repository
from gateway.deploy.repo_template import parse_fill_line
from gateway.deploy.repo_vision import VisionOptions
from gateway.errors import ConfigurationError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `trtllm-gateway repo`."""
    parser.add_argument("--engine-dir", type=Path, required=True, help="TensorRT-LLM engine folder (config.json)")
    parser.add_argument("--tokenizer-dir", type=Path, required=True, help="the engine's Hugging Face tokenizer")
    parser.add_argument("--output", type=Path, required=True, help="folder for the filled model repository")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --output")
    container = parser.add_argument_group("paths inside the Triton container")
    container.add_argument("--container-repository", type=PurePosixPath, default=ContainerPaths.repository)
    container.add_argument("--container-engine-dir", type=PurePosixPath, default=ContainerPaths.engine)
    container.add_argument("--container-tokenizer-dir", type=PurePosixPath, default=ContainerPaths.tokenizer)
    serving = parser.add_argument_group("serving")
    serving.add_argument("--max-batch-size", type=int, help="Triton max batch size (default: the engine's)")
    serving.add_argument("--kv-cache-free-gpu-mem-fraction", type=float, default=0.9)
    serving.add_argument("--no-kv-cache-reuse", action="store_true", help="disable KV-cache block reuse")
    serving.add_argument("--no-guided-decoding", action="store_true", help="no xgrammar (response_format unenforced)")
    serving.add_argument("--add-special-tokens", action="store_true", help="preprocessing adds BOS (off: templates do)")
    for flag in ("--tool-call-parser", "--reasoning-parser"):
        serving.add_argument(
            flag,
            default="auto",
            help="as the gateway's flag (default auto: from the chat template); postprocessing keeps special tokens "
            "when this parser's markers are special tokens (Mistral's [TOOL_CALLS])",
        )
    serving.add_argument(
        "--fill",
        nargs=2,
        action="append",
        default=[],
        metavar=("MODEL", "KEY:VALUE,..."),
        help=f"extra values in NVIDIA's fill_template.py syntax, for one of {', '.join(MODELS)} (repeatable)",
    )
    vision = parser.add_argument_group("vision models (images in; docs/multimodal.md)")
    vision.add_argument("--multimodal-engine-dir", type=Path, help="the vision engine (config.json, model.engine)")
    vision.add_argument(
        "--multimodal-encoders-code",
        type=Path,
        help="NVIDIA's triton_backend/all_models/multimodal/multimodal_encoders/1 (the container's version)",
    )
    vision.add_argument("--image-processor-dir", type=Path, help="Hugging Face image processor (default: tokenizer)")
    vision.add_argument("--max-images", type=int, default=1, help="images per request the engine was built for")
    vision.add_argument("--container-multimodal-engine-dir", type=PurePosixPath, default=VisionOptions.container_engine)
    vision.add_argument("--container-image-processor-dir", type=PurePosixPath, help="default: the tokenizer's")
    build = parser.add_argument_group("engine build (the engine extra: tensorrt-llm, on a GPU machine)")
    build.add_argument("--hf-model-dir", type=Path, help="build --engine-dir from this Hugging Face checkpoint first")
    build.add_argument("--checkpoint-dir", type=Path, help="where the converted checkpoint goes")
    build.add_argument("--trtllm-examples", type=Path, help="examples/ of a TensorRT-LLM checkout of the same version")
    build.add_argument("--model-family", choices=FAMILIES, default="llama")
    build.add_argument("--dtype", choices=["float16", "bfloat16"], default="float16")
    build.add_argument("--quantization", choices=list(QUANTIZATIONS), default="none")
    build.add_argument("--tp-size", type=int, default=1, help="tensor parallelism (GPUs per pipeline stage)")
    build.add_argument("--pp-size", type=int, default=1, help="pipeline parallelism")
    build.add_argument("--build-max-batch-size", type=int, default=64)
    build.add_argument("--max-input-len", type=int, default=4096)
    build.add_argument("--max-seq-len", type=int, default=8192)
    build.add_argument("--max-beam-width", type=int, default=1)
    build.add_argument("--gather-generation-logits", action="store_true", help="needed for top_logprobs")
    build.add_argument("--print-build-commands", action="store_true", help="print the build commands and stop")


def fill_options(args: argparse.Namespace) -> FillOptions:
    """The fill request described by the arguments."""
    fills: dict[str, dict[str, str]] = {}
    for model, line in args.fill:
        fills.setdefault(model, {}).update(parse_fill_line(line))
    return FillOptions(
        engine_dir=args.engine_dir,
        tokenizer_dir=args.tokenizer_dir,
        output=args.output,
        container=ContainerPaths(args.container_repository, args.container_engine_dir, args.container_tokenizer_dir),
        max_batch_size=args.max_batch_size,
        kv_cache_free_gpu_mem_fraction=args.kv_cache_free_gpu_mem_fraction,
        enable_kv_cache_reuse=not args.no_kv_cache_reuse,
        guided_decoding=not args.no_guided_decoding,
        add_special_tokens=args.add_special_tokens,
        tool_call_parser=args.tool_call_parser,
        reasoning_parser=args.reasoning_parser,
        force=args.force,
        fills=fills,
        vision=vision_options(args),
    )


def vision_options(args: argparse.Namespace) -> VisionOptions | None:
    """The vision part of the fill, when --multimodal-engine-dir is given."""
    if args.multimodal_engine_dir is None:
        for flag in ("multimodal_encoders_code", "image_processor_dir", "container_image_processor_dir"):
            if getattr(args, flag) is not None:
                raise ConfigurationError(f"--{flag.replace('_', '-')} needs --multimodal-engine-dir")
        return None
    if args.multimodal_encoders_code is None:
        raise ConfigurationError("--multimodal-engine-dir needs --multimodal-encoders-code (NVIDIA's encoder model)")
    return VisionOptions(
        engine_dir=args.multimodal_engine_dir,
        encoders_code=args.multimodal_encoders_code,
        processor_dir=args.image_processor_dir,
        max_images=args.max_images,
        container_engine=args.container_multimodal_engine_dir,
        container_processor=args.container_image_processor_dir,
    )


def engine_build(args: argparse.Namespace) -> EngineBuild:
    """The engine build described by the arguments (only with --hf-model-dir)."""
    for flag in ("checkpoint_dir", "trtllm_examples"):
        if getattr(args, flag) is None:
            raise ConfigurationError(f"--hf-model-dir needs --{flag.replace('_', '-')}")
    return EngineBuild(
        hf_model_dir=args.hf_model_dir,
        checkpoint_dir=args.checkpoint_dir,
        engine_dir=args.engine_dir,
        examples_dir=args.trtllm_examples,
        family=args.model_family,
        dtype=args.dtype,
        quantization=args.quantization,
        tp_size=args.tp_size,
        pp_size=args.pp_size,
        max_batch_size=args.build_max_batch_size,
        max_input_len=args.max_input_len,
        max_seq_len=args.max_seq_len,
        max_beam_width=args.max_beam_width,
        gather_generation_logits=args.gather_generation_logits,
    )


def run_repo(args: argparse.Namespace) -> int:
    """`trtllm-gateway repo`: (build the engine,) fill the repository, print how to serve it."""
    from gateway.deploy.launch import summary

    options = fill_options(args)
    if args.hf_model_dir is not None:
        build = engine_build(args)
        if args.print_build_commands:
            print(shlex.join(convert_command(build)))
            print(shlex.join(build_command(build)))
            return 0
        run_build(build)
    elif args.print_build_commands:
        raise ConfigurationError("--print-build-commands needs --hf-model-dir")
    print(summary(fill_repository(options)))
    return 0
