"""LoRA adapters: NVIDIA's adapter folder layout, and the engine that serves an adapter as its own model id.

An adapter folder holds `model.lora_weights.npy` (FP16, `[1, modules x layers, D x Hi + Ho x D]`) and
`model.lora_config.npy` (INT32, `[1, modules x layers, 3]`: module id, layer, adapter size), as NVIDIA's
`hf_lora_convert.py` writes them. TensorRT-LLM identifies an adapter by `lora_task_id`; the weights go with a
request only the first time an upstream sees the adapter, or after it reports the adapter evicted from its LoRA
cache (the pool keeps that record per upstream).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from pathlib import Path

from gateway.engine.base import Delta, Engine, EngineCapabilities, EngineInfo, GenerationRequest, LoraAdapter
from gateway.errors import ConfigurationError, GatewayError

WEIGHTS_FILE = "model.lora_weights.npy"
CONFIG_FILE = "model.lora_config.npy"
EVICTED_MARKER = "not found in cache"  # TensorRT-LLM: "LoRA task <id> not found in cache. Please send LoRA weights"


@dataclass(frozen=True, slots=True)
class LoraWeights:
    """An adapter's tensors as sent to Triton (batch dimension 1)."""

    weights: bytes  # FP16, little-endian
    weights_shape: tuple[int, ...]
    config: bytes  # INT32
    config_shape: tuple[int, ...]

    @classmethod
    def load(cls, folder: Path) -> LoraWeights:
        """Read an adapter folder in NVIDIA's layout; ConfigurationError names the file and what is wrong."""
        import numpy as np

        arrays = {}
        for name, dtype in ((WEIGHTS_FILE, np.float16), (CONFIG_FILE, np.int32)):
            try:
                array = np.load(folder / name)
            except (OSError, ValueError) as exc:
                raise ConfigurationError(f"cannot read {folder / name}: {exc}") from exc
            if array.ndim == 2:
                array = array[np.newaxis]
            if array.ndim != 3 or array.shape[0] != 1:
                raise ConfigurationError(f"{folder / name} has shape {array.shape}, not [1, n, k]")
            arrays[name] = array.astype(dtype, copy=False)
        weights, config = arrays[WEIGHTS_FILE], arrays[CONFIG_FILE]
        if config.shape[2] != 3 or config.shape[1] != weights.shape[1]:
            raise ConfigurationError(
                f"{folder}: lora_config {config.shape} does not match lora_weights {weights.shape}"
            )
        return cls(weights.astype("<f2").tobytes(), weights.shape, config.astype("<i4").tobytes(), config.shape)


class AdapterEngine:
    """An adapter's model id: its base model's engine, with the adapter on every request. The base model's own
    entry starts, stops and aborts that engine."""

    def __init__(self, base: Engine, adapter: LoraAdapter) -> None:
        self._base = base
        self._adapter = adapter

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        """The base engine's stream for the request with the adapter."""
        return self._base.generate(replace(request, lora=self._adapter))

    async def start(self) -> None:
        """The base model's entry starts the engine."""

    async def close(self) -> None:
        """The base model's entry closes the engine."""

    def info(self) -> EngineInfo:
        """The base engine's."""
        return self._base.info()

    def capabilities(self) -> EngineCapabilities | None:
        """The base engine's."""
        return self._base.capabilities()

    def abort_all(self, error: GatewayError) -> int:
        """Nothing of its own runs: the base model's entry aborts."""
        return 0
