"""`trtllm-gateway repo` for a vision engine: the multimodal templates filled, NVIDIA's encoder code copied in,
and what is wrong with the engines named before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from gateway.cli import main
from gateway.deploy import repo_template
from gateway.deploy.repo_fill import MODELS, FillOptions, fill_repository
from gateway.deploy.repo_vision import VisionOptions
from gateway.devstack.dev_model import ensure_dev_model
from gateway.errors import ConfigurationError
from tests.unit.fake_trtllm_engine import write_engine
from tests.unit.test_triton_repo_configs import check_wiring

TEMPLATES = Path(__file__).resolve().parents[2] / "triton_repo" / "trtllm"
# NVIDIA's documented fill lines for the multimodal models (tensorrtllm_backend docs/multimodal.md), our values.
NVIDIA_LINES = {
    "preprocessing": "tokenizer_dir:/tokenizer,triton_max_batch_size:8,preprocessing_instance_count:1,"
    "multimodal_model_path:/vision,engine_dir:/engines,max_num_images:1,max_queue_delay_microseconds:20000",
    "multimodal_encoders": "triton_max_batch_size:8,multimodal_model_path:/vision,"
    "encoder_input_features_data_type:TYPE_FP16,hf_model_path:/hf,max_queue_delay_microseconds:20000",
    "ensemble": "triton_max_batch_size:8,logits_datatype:TYPE_FP32",
    "tensorrt_llm_bls": "triton_max_batch_size:8,decoupled_mode:False,bls_instance_count:1,accumulate_tokens:False,"
    "tensorrt_llm_model_name:tensorrt_llm,multimodal_encoders_name:multimodal_encoders,logits_datatype:TYPE_FP32",
}
COMPLETION = {
    "max_queue_size": "0", "add_special_tokens": "false", "decoupled_mode": "true", "skip_special_tokens": "true",
    "prompt_embedding_table_data_type": "TYPE_FP16", "tensorrt_llm_draft_model_name": "",
}  # fmt: skip


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def parameters(config: model_config_pb2.ModelConfig) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


@pytest.fixture
def engines(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An LLM engine built with a prompt table (128 x 576 rows), a LLaVA vision engine, NVIDIA's encoder code."""
    llm = write_engine(tmp_path / "engine", {"build_config.max_prompt_embedding_table_size": 128 * 576})
    vision = tmp_path / "vision"
    vision.mkdir()
    (vision / "config.json").write_text(json.dumps({"builder_config": {"model_type": "llava", "precision": "fp16"}}))
    code = tmp_path / "nvidia_multimodal_encoders_1"
    code.mkdir()
    (code / "model.py").write_text("# NVIDIA's encoder model\n")
    (code / "multimodal_utils.py").write_text("# NVIDIA's helpers\n")
    return llm, vision, code


def fill(tmp_path: Path, engines: tuple[Path, Path, Path], **vision: object) -> Path:
    llm, engine, code = engines
    options = FillOptions(llm, ensure_dev_model(), tmp_path / "repo", vision=VisionOptions(engine, code, **vision))  # type: ignore[arg-type]
    return fill_repository(options).path


def test_a_vision_fill_lays_the_multimodal_models_over_the_text_ones(
    tmp_path: Path, engines: tuple[Path, Path, Path]
) -> None:
    output = fill(tmp_path, engines, max_images=1)
    assert not (output / "multimodal").exists()
    assert (output / "multimodal_encoders" / "1" / "model.py").read_text() == "# NVIDIA's encoder model\n"
    assert (output / "multimodal_encoders" / "1" / "multimodal_utils.py").is_file()
    configs = {m: parse((output / m / "config.pbtxt").read_text()) for m in (*MODELS, "multimodal_encoders")}
    assert all(not repo_template.placeholders((output / m / "config.pbtxt").read_text()) for m in configs)
    check_wiring(configs["ensemble"], configs)
    assert [s.model_name for s in configs["ensemble"].ensemble_scheduling.step][1] == "multimodal_encoders"
    assert parameters(configs["preprocessing"]) == parameters(configs["preprocessing"]) | {
        "multimodal_model_path": "/multimodal_engine",
        "engine_dir": "/engines",
        "hf_model_path": "/tokenizer",
        "max_num_images": "1",
    }
    encoder = parameters(configs["multimodal_encoders"])
    assert encoder == {"multimodal_model_path": "/multimodal_engine", "hf_model_path": "/tokenizer"}
    assert parameters(configs["tensorrt_llm_bls"])["multimodal_encoders_name"] == "multimodal_encoders"


def test_a_text_fill_has_no_multimodal_parts(tmp_path: Path, engines: tuple[Path, Path, Path]) -> None:
    output = fill_repository(FillOptions(engines[0], ensure_dev_model(), tmp_path / "repo")).path
    assert sorted(p.name for p in output.iterdir() if p.is_dir()) == sorted(MODELS)
    preprocessing = parameters(parse((output / "preprocessing" / "config.pbtxt").read_text()))
    assert "multimodal_model_path" not in preprocessing and "max_num_images" not in preprocessing
    steps = parse((output / "ensemble" / "config.pbtxt").read_text()).ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["preprocessing", "tensorrt_llm", "postprocessing"]


def test_an_engine_without_room_for_the_images_is_refused(tmp_path: Path, engines: tuple[Path, Path, Path]) -> None:
    with pytest.raises(ConfigurationError, match="max_multimodal_len"):
        fill(tmp_path, engines, max_images=1000)
    assert not (tmp_path / "repo").exists()


def test_an_unknown_family_and_missing_code_are_named(tmp_path: Path, engines: tuple[Path, Path, Path]) -> None:
    _, vision, code = engines
    (vision / "config.json").write_text(json.dumps({"builder_config": {"model_type": "whisper"}}))
    with pytest.raises(ConfigurationError, match="vision family 'whisper'"):
        fill(tmp_path, engines)
    (vision / "config.json").write_text(json.dumps({"builder_config": {"model_type": "mllama"}}))
    (code / "model.py").unlink()
    with pytest.raises(ConfigurationError, match=r"multimodal-encoders-code .* has no model\.py"):
        fill(tmp_path, engines)


@pytest.mark.parametrize("model", sorted(NVIDIA_LINES))
def test_nvidias_multimodal_fill_lines_are_accepted(model: str) -> None:
    folder = TEMPLATES / "multimodal" / model if model in ("ensemble", "multimodal_encoders") else TEMPLATES / model
    text = (folder / "config.pbtxt").read_text()
    values = repo_template.parse_fill_line(NVIDIA_LINES[model])
    repo_template.check_known(text, values, model)
    known = repo_template.placeholders(text)
    completed = {key: value for key, value in COMPLETION.items() if key in known} | values
    assert parse(repo_template.render(text, completed, model)).name == model


def test_cli_fills_a_vision_repository_and_prints_the_encoder_launch(
    tmp_path: Path, engines: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    llm, vision, code = engines
    argv = ["repo", "--engine-dir", str(llm), "--tokenizer-dir", str(ensure_dev_model())]
    argv += ["--output", str(tmp_path / "repo"), "--multimodal-engine-dir", str(vision)]
    assert main(argv) == 2
    assert "--multimodal-encoders-code" in capsys.readouterr().err
    assert main([*argv, "--multimodal-encoders-code", str(code), "--max-images", "2"]) == 0
    printed = capsys.readouterr().out
    assert "--tensorrt_llm_model_name=tensorrt_llm,multimodal_encoders" in printed
    assert f"{vision} -> /multimodal_engine" in printed and "up to 2 per request" in printed
