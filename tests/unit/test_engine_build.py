"""The engine extra's commands: checkpoint conversion (or quantisation) and `trtllm-build`, as NVIDIA documents
them; these machines cannot run them, so the commands themselves are what is tested."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.deploy.engine_build import EngineBuild, build_command, convert_command, engine_extra_installed
from gateway.errors import ConfigurationError

EXAMPLES = Path("/src/TensorRT-LLM/examples")


def build(**changes: object) -> EngineBuild:
    """A build of a Llama checkpoint with `changes`."""
    values: dict[str, object] = {
        "hf_model_dir": Path("/hf/llama"),
        "checkpoint_dir": Path("/work/ckpt"),
        "engine_dir": Path("/work/engine"),
        "examples_dir": EXAMPLES,
    }
    return EngineBuild(**(values | changes))  # type: ignore[arg-type]


def option(command: list[str], name: str) -> str:
    """The value after `name`."""
    return command[command.index(name) + 1]


def test_plain_conversion_uses_the_familys_convert_checkpoint_with_tp_and_pp() -> None:
    command = convert_command(build(tp_size=4, pp_size=2, dtype="bfloat16"))
    assert command[:2] == ["python3", str(EXAMPLES / "models/core/llama/convert_checkpoint.py")]
    assert (option(command, "--tp_size"), option(command, "--pp_size"), option(command, "--dtype")) == (
        "4",
        "2",
        "bfloat16",
    )
    assert option(command, "--model_dir") == "/hf/llama" and option(command, "--output_dir") == "/work/ckpt"


@pytest.mark.parametrize(
    ("quantization", "script", "expected"),
    [
        (
            "int8_wo",
            "models/core/llama/convert_checkpoint.py",
            ["--use_weight_only", "--weight_only_precision", "int8"],
        ),
        ("int4_wo", "models/core/llama/convert_checkpoint.py", ["--weight_only_precision", "int4"]),
        ("fp8", "quantization/quantize.py", ["--qformat", "fp8", "--kv_cache_dtype", "fp8"]),
        ("int4_awq", "quantization/quantize.py", ["--qformat", "int4_awq"]),
        ("int8_sq", "quantization/quantize.py", ["--qformat", "int8_sq"]),
    ],
)
def test_quantization_picks_the_script_and_its_options(quantization: str, script: str, expected: list[str]) -> None:
    command = convert_command(build(quantization=quantization))
    assert command[1] == str(EXAMPLES / script)
    joined = " ".join(command)
    assert " ".join(expected) in joined


def test_trtllm_build_has_the_limits_and_in_flight_batching_options() -> None:
    command = build_command(build(max_batch_size=32, max_input_len=2048, max_seq_len=4096, max_beam_width=2))
    assert command[0] == "trtllm-build"
    assert option(command, "--checkpoint_dir") == "/work/ckpt" and option(command, "--output_dir") == "/work/engine"
    assert [
        option(command, f"--{n}") for n in ("max_batch_size", "max_input_len", "max_seq_len", "max_beam_width")
    ] == [
        "32",
        "2048",
        "4096",
        "2",
    ]
    assert option(command, "--kv_cache_type") == "paged" and option(command, "--remove_input_padding") == "enable"
    assert "--gather_generation_logits" not in command
    assert "--gather_generation_logits" in build_command(build(gather_generation_logits=True))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"family": "bert"}, "--model-family 'bert'"),
        ({"quantization": "nf4"}, "--quantization 'nf4'"),
        ({"tp_size": 0}, "--tp-size must be at least 1"),
        ({"max_input_len": 9000, "max_seq_len": 8192}, "--max-input-len must not exceed --max-seq-len"),
    ],
)
def test_bad_build_options_name_the_flag(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build(**changes)


def test_cli_prints_the_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "repo", "--engine-dir", str(tmp_path / "engine"), "--tokenizer-dir", str(tmp_path), "--output",
        str(tmp_path / "repo"), "--hf-model-dir", "/hf/llama", "--checkpoint-dir", str(tmp_path / "ckpt"),
        "--trtllm-examples", str(EXAMPLES), "--tp-size", "2", "--quantization", "fp8", "--print-build-commands",
    ]  # fmt: skip
    assert main(argv) == 0
    convert, trtllm_build = (shlex.split(line) for line in capsys.readouterr().out.splitlines())
    assert convert[1].endswith("quantization/quantize.py") and option(convert, "--tp_size") == "2"
    assert trtllm_build[0] == "trtllm-build" and option(trtllm_build, "--output_dir") == str(tmp_path / "engine")


@pytest.mark.skipif(engine_extra_installed(), reason="the engine extra is installed here")
def test_building_without_the_engine_extra_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "repo", "--engine-dir", str(tmp_path / "engine"), "--tokenizer-dir", str(tmp_path), "--output",
        str(tmp_path / "repo"), "--hf-model-dir", "/hf/llama", "--checkpoint-dir", str(tmp_path / "ckpt"),
        "--trtllm-examples", str(EXAMPLES),
    ]  # fmt: skip
    assert main(argv) == 2
    assert "engine extra" in capsys.readouterr().err


def test_build_needs_its_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["repo", "--engine-dir", "e", "--tokenizer-dir", "t", "--output", "o", "--hf-model-dir", "/hf/llama"]
    assert main(argv) == 2
    assert "--hf-model-dir needs --checkpoint-dir" in capsys.readouterr().err
