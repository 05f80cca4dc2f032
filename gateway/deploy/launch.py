"""The command that serves a filled repository in NVIDIA's `tritonserver:<yy.mm>-trtllm-python-py3` image."""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

from gateway.deploy.repo_fill import FilledRepository
from gateway.devstack.triton_server import PYTHON_BACKEND_THREADS  # the BLS stalls at 33 waiting calls with 32

LAUNCH_SCRIPT = PurePosixPath("/trtllm/triton_backend/scripts/launch_triton_server.py")
# GPU 0's CUDA memory pool, for the prompt table the encoder hands the engine (NVIDIA's docs: ~300 MB).
VISION_POOL_BYTES = 300_000_000


def tritonserver_command(repository: PurePosixPath, vision: bool = False) -> list[str]:
    """One tritonserver process (an engine built for one GPU)."""
    command = [
        "tritonserver",
        f"--model-repository={repository}",
        "--disable-auto-complete-config",
        "--backend-config=python,shm-region-prefix-name=prefix0_",
        f"--backend-config=python,thread-pool-size={PYTHON_BACKEND_THREADS}",
    ]
    return [*command, f"--cuda-memory-pool-byte-size=0:{VISION_POOL_BYTES}"] if vision else command


def launch_script_command(
    repository: PurePosixPath, world_size: int, script: PurePosixPath = LAUNCH_SCRIPT, vision: bool = False
) -> list[str]:
    """NVIDIA's launcher: one tritonserver rank per GPU under mpirun; rank 0 serves gRPC/HTTP/metrics (and,
    for a vision model, runs the encoder on GPU 0)."""
    command = ["python3", str(script), f"--model_repo={repository}", f"--world_size={world_size}"]
    if vision:
        command += [
            "--tensorrt_llm_model_name=tensorrt_llm,multimodal_encoders",
            f"--multimodal_gpu0_cuda_mem_pool_bytes={VISION_POOL_BYTES}",
        ]
    return command


def launch_lines(filled: FilledRepository) -> list[str]:
    """What to run inside the Triton container, as shell lines."""
    repository = filled.options.container.repository
    vision = filled.options.vision is not None
    lines = [shlex.join(launch_script_command(repository, filled.engine.world_size, vision=vision))]
    if filled.engine.world_size == 1:
        lines.insert(0, shlex.join(tritonserver_command(repository, vision)))
    return lines


def summary(filled: FilledRepository) -> str:
    """What the CLI prints after filling: the engine's facts and how to serve it."""
    engine, paths = filled.engine, filled.options.container
    guided = {
        None: "off",
        True: "xgrammar (tokenizer info checked with xgrammar)",
        False: "xgrammar (tokenizer info written; install the guided extra to check it)",
    }[filled.tokenizer_info_checked]
    logits = "gathered (top-k logprobs possible)" if engine.gather_generation_logits else "not gathered"
    markers = ", ".join(filled.special_markers)
    special = f"kept ({markers}: the parsers' markers)" if markers else "dropped (skip_special_tokens)"
    run = "\n".join(f"  {line}" for line in launch_lines(filled))
    return (
        f"filled {filled.path} for TensorRT-LLM {engine.version} {engine.architecture} ({engine.dtype})\n"
        f"  max batch {engine.max_batch_size}, beam width {engine.max_beam_width}, "
        f"tp {engine.tensor_parallel} x pp {engine.pipeline_parallel} = {engine.world_size} GPU(s), "
        f"generation logits {logits}, guided decoding {guided}, special tokens in the text {special}\n"
        f"mount in the Triton container: {filled.path} -> {paths.repository}, "
        f"{filled.options.engine_dir} -> {paths.engine}, {filled.options.tokenizer_dir} -> {paths.tokenizer}"
        f"{vision_mounts(filled)}\n"
        f"serve it with (the script is NVIDIA's: mount a TensorRT-LLM checkout of the same version at "
        f"{LAUNCH_SCRIPT.parents[2]}):\n{run}"
    )


def vision_mounts(filled: FilledRepository) -> str:
    """The vision engine's (and a separate image processor's) mounts, for a vision model."""
    vision = filled.options.vision
    if vision is None:
        return ""
    mounts = f", {vision.engine_dir} -> {vision.container_engine}"
    if vision.processor_dir is not None and vision.container_processor is not None:
        mounts += f", {vision.processor_dir} -> {vision.container_processor}"
    return mounts + f" (images: up to {vision.max_images} per request)"
