"""A TensorRT-LLM engine folder as `trtllm-build` (TensorRT-LLM 1.x) leaves it: config.json and rank*.engine."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

# The sections and field names that `trtllm-build` writes (abridged to what a model repository depends on,
# plus neighbours, so that a reader that looks in the wrong place fails).
ENGINE_CONFIG: dict[str, Any] = {
    "version": "1.2.1",
    "pretrained_config": {
        "mlp_bias": False,
        "attn_bias": False,
        "rotary_base": 500000.0,
        "architecture": "LlamaForCausalLM",
        "dtype": "bfloat16",
        "vocab_size": 128256,
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 131072,
        "logits_dtype": "float32",
        "mapping": {
            "world_size": 2,
            "gpus_per_node": 8,
            "cp_size": 1,
            "tp_size": 2,
            "pp_size": 1,
            "moe_tp_size": 2,
            "moe_ep_size": 1,
        },
        "quantization": {"quant_algo": None, "kv_cache_quant_algo": None},
    },
    "build_config": {
        "max_input_len": 4096,
        "max_seq_len": 8192,
        "opt_batch_size": 8,
        "max_batch_size": 128,
        "max_beam_width": 1,
        "max_num_tokens": 8192,
        "opt_num_tokens": 128,
        "max_prompt_embedding_table_size": 0,
        "kv_cache_type": "PAGED",
        "gather_context_logits": False,
        "gather_generation_logits": True,
        "strongly_typed": True,
        "speculative_decoding_mode": 1,
        "lora_config": {"lora_dir": [], "max_lora_rank": 64, "lora_target_modules": []},
        "plugin_config": {
            "gpt_attention_plugin": "auto",
            "gemm_plugin": "auto",
            "remove_input_padding": True,
            "paged_kv_cache": True,
            "tokens_per_block": 32,
            "context_fmha": True,
            "use_paged_context_fmha": True,
            "lora_plugin": None,
        },
    },
}


def write_engine(folder: Path, changes: dict[str, Any] | None = None) -> Path:
    """Write the engine folder; `changes` maps dotted paths ("build_config.max_batch_size") to new values
    (None deletes the field)."""
    config = copy.deepcopy(ENGINE_CONFIG)
    for dotted, value in (changes or {}).items():
        *parents, leaf = dotted.split(".")
        section = config
        for parent in parents:
            section = section[parent]
        if value is None:
            section.pop(leaf, None)
        else:
            section[leaf] = value
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=4))
    mapping = config["pretrained_config"]["mapping"]
    for rank in range(mapping["tp_size"] * mapping["pp_size"] * mapping["cp_size"]):
        (folder / f"rank{rank}.engine").write_bytes(b"\0")
    return folder
