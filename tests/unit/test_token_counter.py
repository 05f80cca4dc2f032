"""TokenCounter counts with the Rust tokenizer directly: the same numbers as transformers' encode."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.tokens import TokenCounter

TEXTS = [
    "",
    "Hi",
    "<|im_start|>user\n" + "word " * 60 + "<|im_end|>\n<|im_start|>assistant\n",
    "Ünïcödé ✓ 漢字 🙂 and\ttabs\n\nnewlines  double  spaces",
    "The quick brown fox jumps over the lazy dog. " * 40,
]


@pytest.mark.parametrize("text", TEXTS)
def test_counts_match_transformers(tokenizer: Any, text: str) -> None:
    expected = len(tokenizer.encode(text, add_special_tokens=False))
    assert TokenCounter(tokenizer).count(text) == expected


class SlowTokenizer:
    """A tokenizer without a Rust backend (a slow one): counted through its own encode."""

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        assert add_special_tokens is False
        return list(range(len(text.split())))


def test_a_tokenizer_without_a_rust_backend_is_counted_by_its_encode() -> None:
    assert TokenCounter(SlowTokenizer()).count("three words here") == 3
