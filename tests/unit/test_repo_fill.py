"""`trtllm-gateway repo`: the engine's config.json read, the templates filled, NVIDIA's fill lines accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from gateway.cli import main
from gateway.deploy import repo_template
from gateway.deploy.engine_config import read_engine_config
from gateway.deploy.launch import summary
from gateway.deploy.repo_fill import MODELS, FilledRepository, FillOptions, fill_repository
from gateway.deploy.tokenizer_info import FILE_NAME, xgrammar_available
from gateway.devstack.dev_model import ensure_dev_model
from gateway.engine.codecs import bls_streams_through_exec
from gateway.errors import ConfigurationError
from tests.unit.fake_trtllm_engine import write_engine

TEMPLATES = Path(__file__).resolve().parents[2] / "triton_repo" / "trtllm"

# The key sets of NVIDIA's documented fill lines for the text models (TensorRT-LLM triton_backend docs/llama.md,
# streaming and not, and docs/guided_decoding.md for the C++ and the Python backend), with values of our own.
NVIDIA_FILL_LINES = {
    "preprocessing": ["tokenizer_dir:/tokenizer,triton_max_batch_size:64,preprocessing_instance_count:1"],
    "postprocessing": ["tokenizer_dir:/tokenizer,triton_max_batch_size:64,postprocessing_instance_count:1"],
    "ensemble": ["triton_max_batch_size:64,logits_datatype:TYPE_FP32"],
    "tensorrt_llm_bls": [
        "triton_max_batch_size:64,decoupled_mode:False,bls_instance_count:1,accumulate_tokens:False,"
        "logits_datatype:TYPE_FP32,prompt_embedding_table_data_type:TYPE_FP16",
        "triton_max_batch_size:64,decoupled_mode:True,bls_instance_count:1,accumulate_tokens:True,"
        "logits_datatype:TYPE_FP32,prompt_embedding_table_data_type:TYPE_FP16",
        "triton_max_batch_size:64,decoupled_mode:False,bls_instance_count:1,accumulate_tokens:False,"
        "logits_datatype:TYPE_FP32",
    ],
    "tensorrt_llm": [
        "triton_backend:tensorrtllm,triton_max_batch_size:64,decoupled_mode:False,max_beam_width:1,"
        "engine_dir:/engines,max_tokens_in_paged_kv_cache:2560,max_attention_window_size:2560,"
        "kv_cache_free_gpu_mem_fraction:0.5,exclude_input_in_output:True,enable_kv_cache_reuse:False,"
        "batching_strategy:inflight_fused_batching,max_queue_delay_microseconds:0,"
        "encoder_input_features_data_type:TYPE_FP16,logits_datatype:TYPE_FP32,prompt_embedding_table_data_type:TYPE_FP16",
        "triton_backend:tensorrtllm,triton_max_batch_size:64,decoupled_mode:True,max_beam_width:1,engine_dir:/engines,"
        "kv_cache_free_gpu_mem_fraction:0.5,exclude_input_in_output:True,enable_kv_cache_reuse:False,"
        "batching_strategy:inflight_fused_batching,max_queue_delay_microseconds:0,"
        "encoder_input_features_data_type:TYPE_FP16,logits_datatype:TYPE_FP32,guided_decoding_backend:xgrammar,"
        "xgrammar_tokenizer_info_path:/models/xgrammar_tokenizer_info.json",
        "triton_backend:python,triton_max_batch_size:64,decoupled_mode:True,max_beam_width:1,engine_dir:/engines,"
        "kv_cache_free_gpu_mem_fraction:0.5,exclude_input_in_output:True,enable_kv_cache_reuse:False,"
        "batching_strategy:inflight_fused_batching,max_queue_delay_microseconds:0,"
        "encoder_input_features_data_type:TYPE_FP16,logits_datatype:TYPE_FP32,tokenizer_dir:/tokenizer,"
        "guided_decoding_backend:xgrammar",
    ],
}
# What NVIDIA's lines leave out and the Triton config still needs (fill_template.py leaves them unfilled).
COMPLETION = {
    "max_queue_delay_microseconds": "0", "max_queue_size": "0", "tokenizer_dir": "/tokenizer",
    "add_special_tokens": "false", "skip_special_tokens": "true", "decoupled_mode": "true",
    "prompt_embedding_table_data_type": "TYPE_FP16", "encoder_input_features_data_type": "TYPE_FP16",
    "logits_datatype": "TYPE_FP32", "tensorrt_llm_model_name": "tensorrt_llm", "tensorrt_llm_draft_model_name": "",
    "multimodal_encoders_name": "", "accumulate_tokens": "true",
}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer_dir() -> Path:
    """The dev model's Hugging Face tokenizer folder."""
    return ensure_dev_model()


@pytest.fixture
def engine_dir(tmp_path: Path) -> Path:
    """A tp=2 engine folder, as trtllm-build writes it."""
    return write_engine(tmp_path / "engine")


def parse(text: str) -> model_config_pb2.ModelConfig:
    """A filled config.pbtxt as Triton parses it."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def parameters(config: model_config_pb2.ModelConfig) -> dict[str, str]:
    """key -> string value of a config's parameters."""
    return {key: value.string_value for key, value in config.parameters.items()}


def test_engine_config_is_read_from_the_builders_fields(engine_dir: Path) -> None:
    engine = read_engine_config(engine_dir)
    assert (engine.version, engine.architecture, engine.dtype) == ("1.2.1", "LlamaForCausalLM", "bfloat16")
    assert (engine.max_batch_size, engine.max_beam_width, engine.world_size) == (128, 1, 2)
    assert engine.gather_generation_logits and not engine.gather_context_logits
    assert engine.logits_datatype() == "TYPE_FP32"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": None}, "old builder API"),
        ({"build_config.max_batch_size": None}, "build_config.max_batch_size is missing"),
        ({"build_config.max_beam_width": 0}, "build_config.max_beam_width must be a positive integer"),
        ({"pretrained_config.dtype": "int8"}, "pretrained_config.dtype 'int8'"),
        ({"pretrained_config.mapping.world_size": 4}, "world_size 4 is not tp_size x pp_size x cp_size = 2"),
        ({"build_config.gather_generation_logits": "yes"}, "gather_generation_logits must be true or false"),
    ],
)
def test_bad_engine_config_names_the_field(tmp_path: Path, changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        read_engine_config(write_engine(tmp_path / "engine", changes))


def test_missing_rank_engine_is_an_error(engine_dir: Path) -> None:
    (engine_dir / "rank1.engine").unlink()
    with pytest.raises(ConfigurationError, match=r"lacks rank1\.engine \(world size 2\)"):
        read_engine_config(engine_dir)


def test_fill_sets_engine_values_and_what_the_gateway_needs(
    engine_dir: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    filled = fill_repository(FillOptions(engine_dir, tokenizer_dir, tmp_path / "repo"))
    configs = {model: (filled.path / model / "config.pbtxt").read_text() for model in MODELS}
    assert all(repo_template.placeholders(text) == set() for text in configs.values())
    engine = parse(configs["tensorrt_llm"])
    values = parameters(engine)
    assert engine.backend == "tensorrtllm" and engine.max_batch_size == 128
    assert engine.model_transaction_policy.decoupled
    assert values["gpt_model_type"] == "inflight_fused_batching"
    assert values["gpt_model_path"] == "/engines"
    assert values["max_beam_width"] == "1"
    assert values["exclude_input_in_output"] == "true"
    assert values["guided_decoding_backend"] == "xgrammar"
    assert values["xgrammar_tokenizer_info_path"] == f"/models/tensorrt_llm/{FILE_NAME}"
    assert "lora_prefetch_dir" not in values  # unset optional parameters are removed, not left as ${...}
    bls = parse(configs["tensorrt_llm_bls"])
    assert bls.model_transaction_policy.decoupled
    assert parameters(bls)["accumulate_tokens"] == "true"
    assert parameters(bls)["engine_grpc_url"] == ""  # exec, as NVIDIA's BLS (the container may lack tritonclient)
    assert bls_streams_through_exec(bls)  # which the gateway warns about
    del bls.parameters["engine_grpc_url"]
    assert not bls_streams_through_exec(bls)  # NVIDIA's BLS: one request per instance cannot deadlock
    assert parameters(parse(configs["preprocessing"]))["tokenizer_dir"] == "/tokenizer"
    assert parse(configs["ensemble"]).max_batch_size == 128


def test_tokenizer_info_has_nvidias_shape(engine_dir: Path, tokenizer_dir: Path, tmp_path: Path) -> None:
    filled = fill_repository(FillOptions(engine_dir, tokenizer_dir, tmp_path / "repo"))
    info = json.loads((filled.path / "tensorrt_llm" / FILE_NAME).read_text())
    assert set(info) == {"encoded_vocab", "tokenizer_str", "stop_token_ids"}
    vocab = json.loads(info["tokenizer_str"])["model"]["vocab"]
    assert all(info["encoded_vocab"][token_id] == token for token, token_id in vocab.items())
    assert info["stop_token_ids"] and isinstance(info["stop_token_ids"][0], int)
    assert filled.tokenizer_info_checked is xgrammar_available()


def test_guided_decoding_off_removes_both_parameters(engine_dir: Path, tokenizer_dir: Path, tmp_path: Path) -> None:
    filled = fill_repository(FillOptions(engine_dir, tokenizer_dir, tmp_path / "repo", guided_decoding=False))
    values = parameters(parse((filled.path / "tensorrt_llm" / "config.pbtxt").read_text()))
    assert "guided_decoding_backend" not in values and "xgrammar_tokenizer_info_path" not in values
    assert not (filled.path / "tensorrt_llm" / FILE_NAME).exists()


def test_postprocessing_keeps_special_tokens_when_the_parsers_markers_are_special_tokens(
    engine_dir: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    from gateway.devstack.families import ensure_family_model

    def skip_special_tokens(filled: FilledRepository) -> str:
        return parameters(parse((filled.path / "postprocessing" / "config.pbtxt").read_text()))["skip_special_tokens"]

    mistral = ensure_family_model("mistral")  # its template implies the mistral parser; [TOOL_CALLS] is special
    filled = fill_repository(FillOptions(engine_dir, mistral, tmp_path / "mistral", guided_decoding=False))
    assert filled.special_markers == ["[TOOL_CALLS]"] and skip_special_tokens(filled) == "false"
    assert "special tokens in the text kept ([TOOL_CALLS]" in summary(filled)
    no_tools = FillOptions(engine_dir, mistral, tmp_path / "none", guided_decoding=False, tool_call_parser="none")
    assert skip_special_tokens(fill_repository(no_tools)) == "true"
    dev = fill_repository(FillOptions(engine_dir, tokenizer_dir, tmp_path / "dev"))  # hermes: plain-text markers
    assert dev.special_markers == [] and skip_special_tokens(dev) == "true"
    with pytest.raises(ConfigurationError, match="--tool-call-parser 'nope'"):
        fill_repository(FillOptions(engine_dir, mistral, tmp_path / "bad", tool_call_parser="nope"))


@pytest.mark.parametrize(
    ("fills", "message"),
    [
        ({"tensorrt_llm": {"exclude_input_in_output": "false"}}, "exclude_input_in_output must be true"),
        ({"tensorrt_llm": {"kv_cache_free_gpu_mem_fracton": "0.5"}}, "no placeholder kv_cache_free_gpu_mem_fracton"),
        ({"tensorrt_llm": {"batching_strategy": ""}}, "batching_strategy must be set"),
        ({"tokenizer": {"x": "y"}}, "no model tokenizer"),
    ],
)
def test_bad_fill_is_refused(
    engine_dir: Path, tokenizer_dir: Path, tmp_path: Path, fills: dict[str, dict[str, str]], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        fill_repository(FillOptions(engine_dir, tokenizer_dir, tmp_path / "repo", fills=fills))


def test_batch_size_above_the_engines_is_refused(engine_dir: Path, tokenizer_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="exceeds the engine's max_batch_size 128"):
        fill_repository(FillOptions(engine_dir, tokenizer_dir, tmp_path / "repo", max_batch_size=256))


def test_unfilled_placeholder_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match=r"ensemble: no value for logits_datatype"):
        repo_template.render(
            (TEMPLATES / "ensemble" / "config.pbtxt").read_text(), {"triton_max_batch_size": "8"}, "ensemble"
        )


@pytest.mark.parametrize(
    ("model", "line"), [(model, line) for model, lines in NVIDIA_FILL_LINES.items() for line in lines]
)
def test_nvidias_fill_lines_are_accepted(model: str, line: str) -> None:
    """fill_template.py asserts that each key is in the file; the filled config must then parse."""
    text = (TEMPLATES / model / "config.pbtxt").read_text()
    values = repo_template.parse_fill_line(line)
    repo_template.check_known(text, values, model)
    known = repo_template.placeholders(text)
    completed = {key: value for key, value in COMPLETION.items() if key in known} | values
    config = parse(repo_template.render(text, completed, model))
    assert config.name == model and config.max_batch_size == 64


def test_fill_line_escapes_commas() -> None:
    assert repo_template.parse_fill_line(r"gpu_device_ids:0\,1,decoupled_mode:true") == {
        "gpu_device_ids": "0,1",
        "decoupled_mode": "true",
    }
    with pytest.raises(ConfigurationError, match="not key:value"):
        repo_template.parse_fill_line("decoupled_mode")


def test_cli_fills_and_prints_the_launch_command(
    engine_dir: Path, tokenizer_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "repo"
    argv = ["repo", "--engine-dir", str(engine_dir), "--tokenizer-dir", str(tokenizer_dir), "--output", str(output)]
    assert (
        main(
            [
                *argv,
                *("--fill", "tensorrt_llm", "kv_cache_free_gpu_mem_fraction:0.5,enable_chunked_context:true"),
                *("--fill", "tensorrt_llm_bls", "engine_grpc_url:127.0.0.1:8001"),  # the BLS deadlock's work-around
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "--world_size=2" in printed and "tp 2 x pp 1 = 2 GPU(s)" in printed
    assert "generation logits gathered" in printed
    values = parameters(parse((output / "tensorrt_llm" / "config.pbtxt").read_text()))
    assert values["kv_cache_free_gpu_mem_fraction"] == "0.5" and values["enable_chunked_context"] == "true"
    bls = parse((output / "tensorrt_llm_bls" / "config.pbtxt").read_text())
    assert parameters(bls)["engine_grpc_url"] == "127.0.0.1:8001" and not bls_streams_through_exec(bls)
    assert main(argv) == 2  # not empty any more
    assert "--output" in capsys.readouterr().err
    assert main([*argv, "--force", "--fill", "tensorrt_llm", "no_such_key:1"]) == 2
    assert "no placeholder no_such_key" in capsys.readouterr().err


@pytest.mark.skipif(not xgrammar_available(), reason="the guided extra (xgrammar) is not installed")
def test_xgrammar_check_rejects_a_wrong_vocabulary(tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    from gateway.deploy.tokenizer_info import check_with_xgrammar, tokenizer_info

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    info = tokenizer_info(tokenizer)
    check_with_xgrammar(info, tokenizer, len(info["encoded_vocab"]))
    info["encoded_vocab"][10], info["encoded_vocab"][11] = info["encoded_vocab"][11], info["encoded_vocab"][10]
    with pytest.raises(ConfigurationError, match="decodes the tokenizer info file differently"):
        check_with_xgrammar(info, tokenizer, len(info["encoded_vocab"]))


def test_the_one_gpu_command_raises_the_python_backends_threads() -> None:
    from pathlib import PurePosixPath

    from gateway.deploy.launch import tritonserver_command

    command = tritonserver_command(PurePosixPath("/models"))
    assert "--backend-config=python,thread-pool-size=512" in command  # the BLS stalls at the 33rd call with 32
