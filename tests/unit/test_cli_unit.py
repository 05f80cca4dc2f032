"""The `trtllm-gateway` command: configuration errors end it at once with status 2, with or without workers."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_bad_tokenizer_folder_ends_serve_with_status_2(tmp_path, workers: str) -> None:
    missing = tmp_path / "no-tokenizer-here"
    command = [sys.executable, "-m", "gateway", "serve", "--workers", workers, "--tokenizer", str(missing)]
    command += ["--triton-url", "127.0.0.1:1", "--port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"--tokenizer {missing} is not a Hugging Face tokenizer folder" in done.stderr
    assert "Traceback" not in done.stderr


def test_dev_and_triton_take_the_vision_model() -> None:
    from gateway.cli import _dev_options, build_parser

    for command in ("dev", "triton"):
        args = build_parser().parse_args([command, "--engine", "scripted", "--vision"])
        assert _dev_options(args).vision
        assert not _dev_options(build_parser().parse_args([command])).vision
