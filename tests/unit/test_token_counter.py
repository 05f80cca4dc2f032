"""TextEncoder (and TokenCounter over it) calls the Rust tokenizer directly: the same ids and counts as
transformers' encode, on the dev tokenizer and on every dev family's real tokenizer; the texts it encoded last are
not encoded again."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gateway.core.tokens import TokenCounter
from gateway.devstack.families import FAMILIES, family, family_tokenizer
from gateway.engine import token_ids
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


class _Encoding:
    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)


class CountingBackend:
    """A Rust-like backend that counts its calls: one id per word."""

    def __init__(self) -> None:
        self.calls = 0

    def encode_batch_fast(self, texts: list[str], add_special_tokens: bool) -> list[_Encoding]:
        self.calls += 1
        return [_Encoding([len(word) for word in text.split()]) for text in texts]


class FastTokenizer:
    def __init__(self) -> None:
        self.backend_tokenizer = CountingBackend()


def test_a_prompt_is_tokenized_once_for_its_count_its_route_and_its_upstream_request() -> None:
    tokenizer = FastTokenizer()
    counter = TokenCounter(tokenizer)
    shared = TextEncoder.of(tokenizer)
    assert TextEncoder.of(tokenizer) is shared
    prompt = "a prompt of seven words in all"
    assert counter.count(prompt) == 7  # the key's token limits
    assert shared.ids(prompt) == [1, 6, 2, 5, 5, 2, 3]  # routing, then the direct-mode request
    assert shared.ids(prompt) == [1, 6, 2, 5, 5, 2, 3]
    assert counter.count(prompt) == 7  # the usage at the end
    assert tokenizer.backend_tokenizer.calls == 1
    assert counter.count("another text") == 2
    assert tokenizer.backend_tokenizer.calls == 2


def test_the_ids_handed_out_are_copies() -> None:
    encoder = TextEncoder(FastTokenizer())
    encoder.ids("one two").append(99)
    assert encoder.ids("one two") == [3, 3]


def test_the_kept_ids_are_bounded_by_texts_and_by_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(token_ids, "RECENT_TEXTS", 3)
    monkeypatch.setattr(token_ids, "RECENT_TOKENS", 10)
    tokenizer = FastTokenizer()
    encoder = TextEncoder(tokenizer)
    for text in ("a", "b", "c", "d"):  # "a" is the least recently used when "d" comes
        encoder.count(text)
    calls = tokenizer.backend_tokenizer.calls
    encoder.count("b")
    assert tokenizer.backend_tokenizer.calls == calls
    encoder.count("a")
    assert tokenizer.backend_tokenizer.calls == calls + 1
    long = "w " * 11  # over RECENT_TOKENS: never kept, and nothing else is evicted for it
    encoder.count(long)
    encoder.count(long)
    assert tokenizer.backend_tokenizer.calls == calls + 3
    encoder.count("nine words " * 4 + "x")  # 9 tokens: the least recent go ("d", then "b") until at most 10 are kept
    encoder.count("a")
    assert tokenizer.backend_tokenizer.calls == calls + 4
    encoder.count("b")
    assert tokenizer.backend_tokenizer.calls == calls + 5


def test_threads_encoding_at_once_get_their_own_texts_ids(tokenizer: Any) -> None:
    encoder = TextEncoder(tokenizer)
    texts = [f"text number {i} " * (i % 7 + 1) for i in range(200)]
    expected = {text: tokenizer.encode(text, add_special_tokens=False) for text in texts}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(encoder.ids, texts * 3))
    assert results == [expected[text] for text in texts * 3]


def test_a_tokenizer_that_cannot_be_weakly_referenced_gets_an_encoder_of_its_own() -> None:
    class Unhashable(FastTokenizer):
        __hash__ = None  # type: ignore[assignment]

    tokenizer = Unhashable()
    assert TextEncoder.of(tokenizer).count("two words") == 2
    assert TextEncoder.of(tokenizer) is not TextEncoder.of(tokenizer)
