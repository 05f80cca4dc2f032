"""The dev stack: the dev model, `triton_repo/dev` rendered with its values, and the real tritonserver on it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.devstack.repository import MULTIMODAL, render_model_repository, triton_repo_root
from gateway.devstack.triton_server import TritonPorts, TritonServer, start_triton

EngineKind = Literal["hf", "synthetic", "scripted"]


def default_cache_root() -> Path:
    """Where built artefacts are cached: $GATEWAY_CACHE_DIR or ~/.cache/trtllm-gateway."""
    configured = os.environ.get("GATEWAY_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "trtllm-gateway"


@dataclass(frozen=True)
class DevStackOptions:
    """What the dev repository is rendered with: the model family, and values for the `${...}` placeholders."""

    engine: EngineKind = "hf"
    # `dev` (the trtllm-dev model) or a family of gateway.devstack.families: qwen, deepseek, mistral.
    family: str = "dev"
    # None: `xgrammar` for the hf engine (which enforces guides), unfilled for the others (which cannot);
    # "" leaves it unfilled, so guides are silently ignored, as the real backend does.
    guided_decoding_backend: str | None = None
    max_batch_size: int = 64
    max_num_active: int = 64
    synthetic_ttft_ms: float = 20.0
    synthetic_itl_ms: float = 5.0
    synthetic_tokens_per_response: int = 1
    accumulate_tokens: bool = True
    exclude_input_in_output: bool = False
    add_special_tokens: bool = False
    skip_special_tokens: bool = True
    bls_instance_count: int = 1
    # How the BLS calls tensorrt_llm: over Triton's own gRPC port, or the Python backend's exec(decoupled=True)
    # (its default in production, which can deadlock under load: triton_repo/README.md, Known defects).
    bls_engine: Literal["grpc", "exec"] = "grpc"
    engine_instance_count: int = 1  # > 1 only for benchmarks that cancel: a stop request reaches one instance
    # The synthetic engine's prefix-cache model: tokens per KV block, cached blocks per instance (0: none),
    # and the prefill time per uncached prompt token that the first token waits for.
    kv_block_size: int = 64
    kv_cache_blocks: int = 4096
    synthetic_prefill_ms_per_token: float = 0.0
    lora_cache_adapters: int = 4  # LoRA adapters the synthetic engine holds per instance
    # A vision model (gateway/devstack/dev_vision.py): the multimodal ensemble and the stand-in encoder
    # (triton_repo/dev/multimodal), images in preprocessing and the BLS; the scripted or synthetic engine.
    vision: bool = False
    max_images: int = 16

    @property
    def guided_backend(self) -> str:
        """The `guided_decoding_backend` value the repository gets."""
        if self.guided_decoding_backend is not None:
            return self.guided_decoding_backend
        return "xgrammar" if self.engine == "hf" else ""

    def engine_grpc_url(self, ports: TritonPorts) -> str:
        """The BLS's `engine_grpc_url` for a Triton on `ports` (empty: exec)."""
        return f"127.0.0.1:{ports.grpc}" if self.bls_engine == "grpc" else ""

    def placeholder_values(
        self, model_dir: Path, vision_dir: Path | None = None, engine_grpc_url: str = ""
    ) -> dict[str, str]:
        """The `${name}` -> value map for `triton_repo/dev` (`vision_dir`: the dev vision files, for a vision model;
        `engine_grpc_url`: Triton's own gRPC address, for the BLS's engine calls, empty for `exec`)."""
        from gateway.devstack.tokenizer_info import TOKENIZER_INFO_FILE

        def flag(value: bool) -> str:
            return "true" if value else "false"

        guided = self.guided_backend
        return {
            "triton_max_batch_size": str(self.max_batch_size),
            "decoupled_mode": "true",
            "logits_datatype": "TYPE_FP32",
            "encoder_input_features_data_type": "TYPE_FP16",
            "prompt_embedding_table_data_type": "TYPE_FP16",
            "tokenizer_dir": str(model_dir),
            "model_dir": str(model_dir),
            "engine": self.engine,
            "max_num_active": str(self.max_num_active),
            "synthetic_ttft_ms": str(self.synthetic_ttft_ms),
            "synthetic_itl_ms": str(self.synthetic_itl_ms),
            "synthetic_tokens_per_response": str(self.synthetic_tokens_per_response),
            "exclude_input_in_output": flag(self.exclude_input_in_output),
            "add_special_tokens": flag(self.add_special_tokens),
            "skip_special_tokens": flag(self.skip_special_tokens),
            "accumulate_tokens": flag(self.accumulate_tokens),
            "preprocessing_instance_count": "1",
            # One postprocessing instance keeps streamed chunks in order (tensorrtllm_backend #614).
            "postprocessing_instance_count": "1",
            "bls_instance_count": str(self.bls_instance_count),
            "engine_instance_count": str(self.engine_instance_count),
            "tensorrt_llm_model_name": "tensorrt_llm",
            "tensorrt_llm_draft_model_name": "",
            "multimodal_encoders_name": "multimodal_encoders" if vision_dir else "",
            "engine_grpc_url": engine_grpc_url,
            "multimodal_model_path": str(vision_dir or ""),
            "engine_dir": str(vision_dir / "engine") if vision_dir else "",
            "hf_model_path": str(vision_dir or ""),
            "max_num_images": str(self.max_images) if vision_dir else "",
            "max_queue_delay_microseconds": "0",
            "max_queue_size": "0",
            "guided_decoding_backend": guided,
            # Written with the model (gateway/devstack/tokenizer_info.py), as NVIDIA's script writes it.
            "xgrammar_tokenizer_info_path": str(model_dir / TOKENIZER_INFO_FILE) if guided else "",
            "kv_block_size": str(self.kv_block_size),
            "kv_cache_blocks": str(self.kv_cache_blocks),
            "synthetic_prefill_ms_per_token": str(self.synthetic_prefill_ms_per_token),
            "lora_cache_adapters": str(self.lora_cache_adapters),
        }


@contextlib.contextmanager
def dev_triton(
    options: DevStackOptions | None = None,
    *,
    cache_root: Path | None = None,
    ports: TritonPorts | None = None,
    log_verbose: int = 0,
    work_dir: Path | None = None,
) -> Iterator[TritonServer]:
    """Build the dev model if needed and run tritonserver on a rendered `triton_repo/dev` until exit."""
    from gateway.devstack.families import ensure_family_model  # torch-free until the model is needed

    options = options or DevStackOptions()
    cache_root = cache_root or default_cache_root()
    model_dir = ensure_family_model(options.family, cache_root)
    vision_dir = None
    if options.vision:
        from gateway.devstack.dev_vision import ensure_dev_vision

        if options.engine == "hf" or options.family != "dev":
            raise ValueError("the dev vision model runs on the scripted or synthetic engine of the dev family")
        vision_dir = ensure_dev_vision(cache_root, options.max_images)
    owns_work_dir = work_dir is None
    work_dir = work_dir or Path(tempfile.mkdtemp(prefix="trtllm-gateway-triton-"))
    ports = ports or TritonPorts.free()  # before rendering: the BLS calls the engine on Triton's gRPC port
    try:
        source = triton_repo_root() / "dev"
        repository = render_model_repository(
            source,
            work_dir / "model_repository",
            options.placeholder_values(model_dir, vision_dir, engine_grpc_url=options.engine_grpc_url(ports)),
            overlay=source / MULTIMODAL if options.vision else None,
        )
        server = start_triton(
            repository, work_dir=work_dir, cache_root=cache_root, ports=ports, log_verbose=log_verbose
        )
        server.model_dir = model_dir
        try:
            yield server
        finally:
            server.stop()
    finally:
        if owns_work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
