"""xgrammar's tokenizer info file, written as NVIDIA's TensorRT-LLM tooling writes it.

The TensorRT-LLM backend reads the file named by the `xgrammar_tokenizer_info_path` model parameter to build
its guided decoder. NVIDIA's `generate_xgrammar_tokenizer_info.py` writes, for a fast Hugging Face tokenizer,
a JSON object with three keys: `encoded_vocab` (every token of `get_vocab()` in the tokenizer's own encoded
form, ordered by id), `tokenizer_str` (the backend tokenizer serialised, i.e. tokenizer.json) and
`stop_token_ids` (the eos token id alone). The dev engine reads the same file, so a dev repository is filled
exactly like a guided-decoding deployment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

TOKENIZER_INFO_FILE = "xgrammar_tokenizer_info.json"


def tokenizer_info(tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    """The file's content for `tokenizer`; ValueError if its ids have gaps (the list position is the id)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token: xgrammar needs a stop token")
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    gaps = [index for position, (_, index) in enumerate(by_id) if index != position]
    if gaps:
        raise ValueError(f"token ids are not contiguous (first gap at id {gaps[0]}): encoded_vocab would shift them")
    return {
        "encoded_vocab": [token for token, _ in by_id],
        "tokenizer_str": tokenizer.backend_tokenizer.to_str(),
        "stop_token_ids": [tokenizer.eos_token_id],
    }


def write_tokenizer_info(tokenizer: PreTrainedTokenizerFast, folder: Path) -> Path:
    """Write `folder/xgrammar_tokenizer_info.json` for `tokenizer` and return its path."""
    path = folder / TOKENIZER_INFO_FILE
    path.write_text(json.dumps(tokenizer_info(tokenizer), ensure_ascii=False), encoding="utf-8")
    return path
