"""The tokenizer file that the TensorRT-LLM C++ backend's guided decoding (xgrammar) reads.

`xgrammar_tokenizer_info_path` points at a JSON object with the same shape as NVIDIA's
`generate_xgrammar_tokenizer_info.py` writes: `encoded_vocab` (the token strings, index = token id),
`tokenizer_str` (the fast tokenizer's serialised `tokenizer.json`, from which xgrammar detects the vocabulary
type) and `stop_token_ids` (the end-of-sequence id). With the `guided` extra (the `xgrammar` package) installed,
the file is also checked the way the backend uses it: xgrammar builds its tokenizer from the file, must decode the
same vocabulary as from the Hugging Face tokenizer itself, and must compile the JSON grammar with it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from gateway.errors import ConfigurationError

FILE_NAME = "xgrammar_tokenizer_info.json"


def tokenizer_info(tokenizer: Any) -> dict[str, Any]:
    """The backend's tokenizer description of a Hugging Face fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ConfigurationError(
            f"--tokenizer-dir: guided decoding needs a fast tokenizer (tokenizer.json), not {type(tokenizer).__name__}"
        )
    if tokenizer.eos_token_id is None:
        raise ConfigurationError("--tokenizer-dir: the tokenizer has no eos_token, which guided decoding stops on")
    vocab = tokenizer.get_vocab()
    encoded = [""] * (max(vocab.values()) + 1)
    for token, token_id in vocab.items():
        encoded[token_id] = token
    return {
        "encoded_vocab": encoded,
        "tokenizer_str": tokenizer.backend_tokenizer.to_str(),
        "stop_token_ids": [tokenizer.eos_token_id],
    }


def xgrammar_available() -> bool:
    """Whether the `xgrammar` package (the `guided` extra) can check the file."""
    return importlib.util.find_spec("xgrammar") is not None


def check_with_xgrammar(info: dict[str, Any], tokenizer: Any, vocab_size: int) -> None:
    """Build xgrammar's tokenizer from `info` as the backend does; it must match xgrammar's own reading."""
    import xgrammar

    metadata = xgrammar.TokenizerInfo._detect_metadata_from_hf(info["tokenizer_str"])
    from_file = xgrammar.TokenizerInfo(
        info["encoded_vocab"],
        metadata["vocab_type"],
        vocab_size=vocab_size,
        stop_token_ids=info["stop_token_ids"],
        add_prefix_space=metadata["add_prefix_space"],
    )
    reference = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
    decoded, expected = from_file.decoded_vocab, reference.decoded_vocab  # the reference is padded to vocab_size
    if decoded != expected[: len(decoded)] or any(expected[len(decoded) :]) or from_file.vocab_size != vocab_size:
        raise ConfigurationError("xgrammar decodes the tokenizer info file differently from the tokenizer itself")
    xgrammar.GrammarCompiler(from_file, max_threads=1).compile_builtin_json_grammar()


def write_tokenizer_info(tokenizer_dir: Path, destination: Path, vocab_size: int | None = None) -> bool:
    """Write the file for the tokenizer in `tokenizer_dir`; True when xgrammar also checked it."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"--tokenizer-dir {tokenizer_dir}: not a Hugging Face tokenizer ({exc})") from None
    info = tokenizer_info(tokenizer)
    checked = xgrammar_available()
    if checked:
        check_with_xgrammar(info, tokenizer, max(vocab_size or 0, len(info["encoded_vocab"])))
    destination.write_text(json.dumps(info, ensure_ascii=False))
    return checked
