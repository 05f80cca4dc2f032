"""The model repositories in triton_repo/: every config parses, the ensemble is wired consistently, and the
dev stand-in of tensorrt_llm declares the production interface."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ROOT = Path(__file__).resolve().parents[2] / "triton_repo"
TRTLLM = ROOT / "trtllm"
DEV = ROOT / "dev"
MODELS = ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls")
SHARED = ("ensemble", "preprocessing", "postprocessing", "tensorrt_llm_bls")
# What the dev stack fills in the models it shares with production (keep in sync with triton_repo/README.md).
SHARED_PLACEHOLDERS = {
    "triton_max_batch_size", "decoupled_mode", "logits_datatype", "tokenizer_dir", "add_special_tokens",
    "skip_special_tokens", "preprocessing_instance_count", "postprocessing_instance_count", "bls_instance_count",
    "accumulate_tokens", "tensorrt_llm_model_name", "tensorrt_llm_draft_model_name", "multimodal_encoders_name",
    "max_queue_delay_microseconds", "max_queue_size", "prompt_embedding_table_data_type",
    "multimodal_model_path", "engine_dir", "hf_model_path", "max_num_images", "engine_grpc_url",
}  # fmt: skip
MULTIMODAL = TRTLLM / "multimodal"
IMAGE_INPUTS = {"image_url_input", "image_bytes_input", "image_input"}
# NVIDIA's tensorrt_llm template (TensorRT-LLM 1.x), as listed in TRITON_INTERFACE.md §4.
TENSORRT_LLM_PLACEHOLDERS = {
    "triton_backend", "triton_max_batch_size", "decoupled_mode", "max_queue_delay_microseconds", "max_queue_size",
    "encoder_input_features_data_type", "logits_datatype", "prompt_embedding_table_data_type", "max_beam_width",
    "batching_strategy", "engine_dir", "encoder_engine_dir", "max_tokens_in_paged_kv_cache",
    "max_attention_window_size", "sink_token_length", "batch_scheduler_policy", "kv_cache_free_gpu_mem_fraction",
    "cross_kv_cache_fraction", "kv_cache_host_memory_bytes", "kv_cache_onboard_blocks", "enable_trt_overlap",
    "exclude_input_in_output", "cancellation_check_period_ms", "stats_check_period_ms",
    "iter_stats_max_iterations", "request_stats_max_iterations", "enable_kv_cache_reuse", "normalize_log_probs",
    "enable_chunked_context", "gpu_device_ids", "participant_ids", "num_nodes", "lora_cache_optimal_adapter_size",
    "lora_cache_max_adapter_size", "lora_cache_gpu_memory_fraction", "lora_cache_host_memory_bytes",
    "lora_prefetch_dir", "decoding_mode", "lookahead_window_size", "lookahead_ngram_size",
    "lookahead_verification_set_size", "medusa_choices", "eagle_choices", "gpu_weights_percent",
    "enable_context_fmha_fp32_acc", "multi_block_mode", "cuda_graph_mode", "cuda_graph_cache_size",
    "speculative_decoding_fast_logits", "tokenizer_dir", "guided_decoding_backend", "xgrammar_tokenizer_info_path",
}  # fmt: skip
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")

Config = model_config_pb2.ModelConfig


def dummy_value(name: str) -> str:
    """A value that makes the filled template valid protobuf text."""
    if name == "prompt_embedding_table_data_type":
        return "TYPE_FP16"  # the ensemble and the BLS send FP16 tables, so production must fill FP16 too
    if name.endswith(("datatype", "data_type")):
        return "TYPE_FP32"
    if name == "decoupled_mode":
        return "true"
    if name in {"triton_max_batch_size", "max_queue_delay_microseconds", "max_queue_size"}:
        return "8"
    return "1" if name.endswith("instance_count") else "dummy"


def load(path: Path) -> Config:
    """Parse a config.pbtxt template with every placeholder filled by a dummy value."""
    text = path.read_text()
    filled = string.Template(text).safe_substitute({n: dummy_value(n) for n in PLACEHOLDER.findall(text)})
    return text_format.Parse(filled, Config())


def placeholders(model: str) -> set[str]:
    """The placeholder names of a production template."""
    return set(PLACEHOLDER.findall((TRTLLM / model / "config.pbtxt").read_text()))


@pytest.fixture(scope="module")
def configs() -> dict[str, Config]:
    """The production templates, parsed."""
    return {model: load(TRTLLM / model / "config.pbtxt") for model in MODELS}


def by_name(tensors: object) -> dict[str, object]:
    """name -> tensor config; fails on a duplicated name."""
    result = {t.name: t for t in tensors}  # type: ignore[attr-defined]
    assert len(result) == len(tensors), f"duplicate tensor names in {[t.name for t in tensors]}"  # type: ignore[arg-type,attr-defined]
    return result


def signature(tensor: object) -> tuple[object, ...]:
    """What a caller sees of a tensor declaration (outputs have no `optional`)."""
    return (tensor.data_type, list(tensor.dims), getattr(tensor, "optional", False))  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", MODELS)
def test_template_parses_and_is_named_after_its_folder(configs: dict[str, Config], model: str) -> None:
    assert configs[model].name == model
    assert configs[model].max_batch_size == 8
    assert (TRTLLM / model / "1").is_dir(), "Triton needs a version folder even without model.py"


@pytest.mark.parametrize("model", SHARED)
def test_shared_models_use_only_the_placeholders_the_dev_stack_fills(model: str) -> None:
    assert placeholders(model) <= SHARED_PLACEHOLDERS


def test_shared_models_together_use_every_documented_placeholder() -> None:
    assert set().union(*(placeholders(m) for m in SHARED)) == SHARED_PLACEHOLDERS


def test_tensorrt_llm_template_has_nvidias_placeholders() -> None:
    assert placeholders("tensorrt_llm") == TENSORRT_LLM_PLACEHOLDERS


@pytest.mark.parametrize("model", ["preprocessing", "postprocessing", "tensorrt_llm_bls"])
def test_python_models_run_on_cpu_with_their_code(configs: dict[str, Config], model: str) -> None:
    assert configs[model].backend == "python"
    assert [g.kind for g in configs[model].instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert (TRTLLM / model / "1" / "model.py").is_file()


def test_decoupled_models_take_the_decoupled_placeholder() -> None:
    for model in ("tensorrt_llm", "tensorrt_llm_bls"):
        assert "decoupled: ${decoupled_mode}" in (TRTLLM / model / "config.pbtxt").read_text()


def test_ensemble_steps_run_preprocessing_then_engine_then_postprocessing(configs: dict[str, Config]) -> None:
    steps = [s.model_name for s in configs["ensemble"].ensemble_scheduling.step]
    assert steps == ["preprocessing", "tensorrt_llm", "postprocessing"]


def same_shape(left: list[int], right: list[int]) -> bool:
    """Triton's ensemble check: same rank, and each dimension equal or -1 on either side."""
    return len(left) == len(right) and all(a == b or -1 in (a, b) for a, b in zip(left, right, strict=True))


def check_wiring(ensemble: Config, configs: dict[str, Config]) -> None:
    """Every step reads what an earlier one (or the client) provides, with its type and shape; every input is
    used; every output is produced as declared."""
    inputs = by_name(ensemble.input)
    available = {name: (t.data_type, list(t.dims)) for name, t in inputs.items()}
    consumed: set[str] = set()
    for step in ensemble.ensemble_scheduling.step:
        target = configs[step.model_name]
        target_inputs, target_outputs = by_name(target.input), by_name(target.output)
        for key, value in step.input_map.items():
            assert key in target_inputs, f"{step.model_name} has no input {key}"
            assert value in available, f"{step.model_name}.{key} reads {value}, which nothing provides"
            kind, dims = available[value]
            assert kind == target_inputs[key].data_type, f"type mismatch on {value} -> {key}"
            assert same_shape(dims, list(target_inputs[key].dims)), f"shape mismatch on {value} -> {key}"
            consumed.add(value)
        required = {n for n, t in target_inputs.items() if not t.optional}
        assert required <= set(step.input_map), f"{step.model_name} misses required inputs"
        for key, value in step.output_map.items():
            assert key in target_outputs, f"{step.model_name} has no output {key}"
            available[value] = (target_outputs[key].data_type, list(target_outputs[key].dims))
    assert set(inputs) <= consumed, f"ensemble inputs never used: {set(inputs) - consumed}"
    for name, tensor in by_name(ensemble.output).items():
        assert available.get(name, (None,))[0] == tensor.data_type, f"ensemble output {name} is not produced"


def test_ensemble_wiring_is_consistent(configs: dict[str, Config]) -> None:
    check_wiring(configs["ensemble"], configs)


@pytest.fixture(scope="module")
def multimodal(configs: dict[str, Config]) -> dict[str, Config]:
    """The production templates with the multimodal ensemble and encoder."""
    return configs | {model: load(MULTIMODAL / model / "config.pbtxt") for model in ("ensemble", "multimodal_encoders")}


def test_multimodal_ensemble_runs_the_encoder_between_preprocessing_and_the_engine(
    multimodal: dict[str, Config],
) -> None:
    steps = [s.model_name for s in multimodal["ensemble"].ensemble_scheduling.step]
    assert steps == ["preprocessing", "multimodal_encoders", "tensorrt_llm", "postprocessing"]
    check_wiring(multimodal["ensemble"], multimodal)
    engine_step = multimodal["ensemble"].ensemble_scheduling.step[2]
    assert engine_step.input_map["prompt_embedding_table"] == "_PROMPT_EMBEDDING_TABLE"


def test_multimodal_ensemble_is_the_text_one_with_images_instead_of_p_tuning(
    configs: dict[str, Config], multimodal: dict[str, Config]
) -> None:
    text, vision = by_name(configs["ensemble"].input), by_name(multimodal["ensemble"].input)
    assert set(text) - set(vision) == {"prompt_embedding_table", "prompt_vocab_size"}
    assert set(vision) - set(text) == IMAGE_INPUTS
    assert {n: signature(t) for n, t in text.items() if n in vision} == {
        n: signature(t) for n, t in vision.items() if n in text
    }
    assert {n: signature(t) for n, t in by_name(configs["ensemble"].output).items()} == {
        n: signature(t) for n, t in by_name(multimodal["ensemble"].output).items()
    }
    bls = by_name(configs["tensorrt_llm_bls"].input)
    assert signature(bls["image_url_input"]) == signature(vision["image_url_input"])
    assert list(vision["image_url_input"].dims) == [-1]  # several images: the gateway's capacity reads this


def test_dev_multimodal_models_are_the_production_ones_but_the_encoder_code() -> None:
    assert (DEV / "multimodal" / "ensemble").resolve() == (MULTIMODAL / "ensemble").resolve()
    encoder = DEV / "multimodal" / "multimodal_encoders"
    assert (encoder / "config.pbtxt").resolve() == (MULTIMODAL / "multimodal_encoders" / "config.pbtxt").resolve()
    assert (encoder / "1" / "model.py").is_file() and not (encoder / "1" / "model.py").is_symlink()


def test_ensemble_renames_sampling_inputs_like_nvidia(configs: dict[str, Config]) -> None:
    engine_step = configs["ensemble"].ensemble_scheduling.step[1]
    renames = {k: v for k, v in engine_step.input_map.items() if k != v and not v.startswith("_")}
    assert renames == {
        "runtime_top_k": "top_k",
        "runtime_top_p": "top_p",
        "len_penalty": "length_penalty",
        "streaming": "stream",
    }


def test_bls_has_the_ensemble_interface_plus_its_own_inputs(configs: dict[str, Config]) -> None:
    ensemble, bls = configs["ensemble"], configs["tensorrt_llm_bls"]
    ensemble_inputs, bls_inputs = by_name(ensemble.input), by_name(bls.input)
    for name, tensor in ensemble_inputs.items():
        assert name in bls_inputs, f"BLS lacks ensemble input {name}"
        assert signature(bls_inputs[name]) == signature(tensor), name
    assert set(bls_inputs) - set(ensemble_inputs) == IMAGE_INPUTS | {
        "video_bytes_input",
        "num_draft_tokens",
        "use_draft_logits",
    }
    assert {n: signature(t) for n, t in by_name(bls.output).items()} == {
        n: signature(t) for n, t in by_name(ensemble.output).items()
    }


@pytest.mark.parametrize(
    ("model", "names"),
    [
        ("ensemble", {"min_tokens", "seed", "return_num_input_tokens", "return_num_output_tokens", "stream"}),
        ("tensorrt_llm_bls", {"min_tokens", "seed", "return_num_input_tokens", "return_num_output_tokens"}),
        ("tensorrt_llm", {"min_tokens", "seed", "return_num_input_tokens", "stop", "streaming", "input_ids"}),
    ],
)
def test_newest_input_names_are_declared(configs: dict[str, Config], model: str, names: set[str]) -> None:
    assert names <= set(by_name(configs[model].input))
    assert {"num_input_tokens", "num_output_tokens"} <= set(by_name(configs[model].output))


def test_engine_requires_only_lengths(configs: dict[str, Config]) -> None:
    required = {t.name for t in configs["tensorrt_llm"].input if not t.optional}
    assert required == {"input_lengths", "request_output_len"}


def test_word_lists_have_the_engine_format(configs: dict[str, Config]) -> None:
    engine_inputs = by_name(configs["tensorrt_llm"].input)
    pre_outputs = by_name(configs["preprocessing"].output)
    for name in ("stop_words_list", "bad_words_list"):
        assert list(engine_inputs[name].dims) == [2, -1]
    for name in ("STOP_WORDS_IDS", "BAD_WORDS_IDS"):
        assert list(pre_outputs[name].dims) == [2, -1]


@pytest.mark.parametrize("model", SHARED)
def test_dev_repository_links_to_the_production_model(model: str) -> None:
    link = DEV / model
    assert link.is_symlink()
    assert Path(link.readlink()) == Path("..") / "trtllm" / model
    assert link.resolve() == (TRTLLM / model).resolve()


def test_dev_engine_declares_the_production_interface(configs: dict[str, Config]) -> None:
    dev_config = DEV / "tensorrt_llm" / "config.pbtxt"
    if not dev_config.exists():
        pytest.skip("no dev tensorrt_llm stand-in in this checkout")
    dev, production = load(dev_config), configs["tensorrt_llm"]
    for kind in ("input", "output"):
        dev_tensors = {n: signature(t) for n, t in by_name(getattr(dev, kind)).items()}
        production_tensors = {n: signature(t) for n, t in by_name(getattr(production, kind)).items()}
        assert dev_tensors == production_tensors, kind
    assert dev.max_batch_size == production.max_batch_size
