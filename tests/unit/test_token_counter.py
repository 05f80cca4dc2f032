"""TextEncoder (and TokenCounter over it) calls the Rust tokenizer directly: the same ids and counts as
transformers' encode, on the dev tokenizer and on every dev family's real tokenizer."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.tokens import TokenCounter
from gateway.devstack.families import FAMILIES, family, family_tokenizer
from gateway.engine.token_ids import TextEncoder

TEXTS = [
    "",
    "Hi",
    "<|im_start|>user\n" + "word " * 60 + "<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
    '[INST] Be brief. [/INST]</s><｜tool▁calls▁begin｜><tool_call>{"a": 1}</tool_call><think>x</think>',
    "Ünïcödé ✓ 漢字 🙂 and\ttabs\n\nnewlines  double  spaces",
    " leading space, trailing space ",
    "The quick brown fox jumps over the lazy dog. " * 40,
]


@pytest.mark.parametrize("text", TEXTS)
def test_counts_match_transformers(tokenizer: Any, text: str) -> None:
    expected = len(tokenizer.encode(text, add_special_tokens=False))
    assert TokenCounter(tokenizer).count(text) == expected


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_tokenizer_of(request: pytest.FixtureRequest) -> Any:
    return family_tokenizer(family(request.param))


@pytest.mark.parametrize("text", TEXTS)
def test_ids_match_transformers_on_the_dev_tokenizer(tokenizer: Any, text: str) -> None:
    assert TextEncoder(tokenizer).ids(text) == tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("text", TEXTS)
def test_ids_and_counts_match_transformers_on_every_family_tokenizer(family_tokenizer_of: Any, text: str) -> None:
    expected = family_tokenizer_of.encode(text, add_special_tokens=False)
    encoder = TextEncoder(family_tokenizer_of)
    assert encoder.ids(text) == expected
    assert encoder.count(text) == len(expected)


class SlowTokenizer:
    """A tokenizer without a Rust backend (a slow one): encoded through its own encode."""

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        assert add_special_tokens is False
        return list(range(len(text.split())))


def test_a_tokenizer_without_a_rust_backend_is_encoded_and_counted_by_its_encode() -> None:
    assert TokenCounter(SlowTokenizer()).count("three words here") == 3
    assert TextEncoder(SlowTokenizer()).ids("three words here") == [0, 1, 2]
