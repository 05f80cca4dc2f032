"""Property tests: streamed text, concatenated, equals a one-shot decode (trimmed at the first stop string)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.stops import StopMatcher, trim_at_stop
from gateway.engine.detokenize import REPLACEMENT, CumulativeTextDiff, IncrementalDetokenizer, ReplacementMerger

MULTI_BYTE_TEXT = "Ünïcödé café 日本語のテキスト 한국어 Привет مرحبا 👩‍👩‍👧 🇫🇷 🚀✨ naïve façade"

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def vocab(tokenizer: Any) -> list[int]:
    """Every id, plus extra weight on ids that appear in multi-byte text (so characters get split)."""
    multi = tokenizer.encode(MULTI_BYTE_TEXT, add_special_tokens=False)
    return list(range(len(tokenizer))) + multi * 20


def one_shot(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def split_points(data: st.DataObject, size: int) -> list[int]:
    cuts = data.draw(st.lists(st.integers(0, size), max_size=size), label="cuts")
    return sorted({0, size, *cuts})


class TransformersDecodeOnly:
    """The tokenizer seen without its Rust backend: the detokenizer then calls transformers' decode."""

    def __init__(self, tokenizer: Any) -> None:
        self.decode = tokenizer.decode


@pytest.mark.parametrize("decoder", ["rust backend", "transformers"])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_incremental_detokenizer_matches_one_shot_decode(
    tokenizer: Any, vocab: list[int], data: st.DataObject, decoder: str
) -> None:
    ids = data.draw(st.lists(st.sampled_from(vocab), max_size=60), label="ids")
    detokenizer = IncrementalDetokenizer(tokenizer if decoder == "rust backend" else TransformersDecodeOnly(tokenizer))
    points = split_points(data, len(ids))
    pieces = [detokenizer.feed(ids[a:b]) for a, b in itertools.pairwise(points)]
    pieces.append(detokenizer.flush())
    assert "".join(pieces) == one_shot(tokenizer, ids)
    # A piece never ends in a replacement character that a later token completes.
    streamed = ""
    for piece in pieces[:-1]:
        streamed += piece
        assert not piece.endswith(REPLACEMENT) or one_shot(tokenizer, ids).startswith(streamed)


def test_detokenizer_holds_back_split_emoji(tokenizer: Any) -> None:
    ids = tokenizer.encode("a🚀b", add_special_tokens=False)
    assert any(REPLACEMENT in tokenizer.decode([i]) for i in ids), "the dev tokenizer must split the emoji"
    detokenizer = IncrementalDetokenizer(tokenizer)
    pieces = [detokenizer.feed([i]) for i in ids] + [detokenizer.flush()]
    assert all(REPLACEMENT not in p for p in pieces)
    assert "".join(pieces) == "a🚀b"


@PROPERTY_SETTINGS
@given(data=st.data())
def test_cumulative_diff_matches_one_shot_decode(tokenizer: Any, vocab: list[int], data: st.DataObject) -> None:
    ids = data.draw(st.lists(st.sampled_from(vocab), max_size=60), label="ids")
    diff = CumulativeTextDiff()
    points = split_points(data, len(ids))[1:]
    pieces = [diff.feed(one_shot(tokenizer, ids[:end])) for end in points]
    pieces.append(diff.flush())
    assert "".join(pieces) == one_shot(tokenizer, ids)
    assert all(not p.endswith(REPLACEMENT) for p in pieces[:-1] if p and REPLACEMENT not in one_shot(tokenizer, ids))


@PROPERTY_SETTINGS
@given(
    text=st.text(alphabet=st.sampled_from([*list("abc xyz\n."), "日", "🚀"]), max_size=80),
    stops=st.lists(st.text(alphabet=st.sampled_from(list("abc x\n.🚀")), min_size=1, max_size=5), max_size=4),
    data=st.data(),
)
def test_stop_matcher_streamed_equals_trimmed_one_shot(text: str, stops: list[str], data: st.DataObject) -> None:
    points = split_points(data, len(text))
    matcher = StopMatcher(stops)
    out = "".join(matcher.feed(text[a:b]) for a, b in itertools.pairwise(points)) + matcher.flush()
    expected, matched = trim_at_stop(text, stops)
    assert out == expected
    assert matcher.matched == matched


@PROPERTY_SETTINGS
@given(data=st.data())
def test_detokenizer_then_stop_matcher(tokenizer: Any, vocab: list[int], data: st.DataObject) -> None:
    ids = data.draw(st.lists(st.sampled_from(vocab), min_size=1, max_size=50), label="ids")
    full = one_shot(tokenizer, ids)
    start = data.draw(st.integers(0, max(len(full) - 1, 0)), label="start")
    stop = full[start : start + data.draw(st.integers(1, 4), label="len")] or "zz"
    detokenizer, matcher = IncrementalDetokenizer(tokenizer), StopMatcher([stop])
    out = "".join(matcher.feed(detokenizer.feed([i])) for i in ids)
    out += matcher.feed(detokenizer.flush()) + matcher.flush()
    assert out == trim_at_stop(full, [stop])[0]


@PROPERTY_SETTINGS
@given(pieces=st.lists(st.text(alphabet=st.sampled_from(["a", "b", REPLACEMENT]), max_size=6), max_size=10))
def test_replacement_merger_keeps_all_other_text(pieces: list[str]) -> None:
    merger = ReplacementMerger()
    out = [merger.feed(p) for p in pieces] + [merger.flush()]
    joined = "".join(out)
    assert joined.replace(REPLACEMENT, "") == "".join(pieces).replace(REPLACEMENT, "")
    assert joined.count(REPLACEMENT) <= "".join(pieces).count(REPLACEMENT)


def test_replacement_merger_one_character_split_across_chunks() -> None:
    merger = ReplacementMerger()
    assert merger.feed("ab" + REPLACEMENT) == "ab"
    assert merger.feed(REPLACEMENT + "c") == REPLACEMENT + "c"
    assert merger.flush() == ""


def test_stop_that_completes_first_wins_over_one_that_starts_first() -> None:
    """Found by the property test: token-by-token generation stops at the first stop string to complete."""
    stops = ["🚀", "b🚀."]
    assert trim_at_stop("b🚀.ca", stops) == ("b", True)
    matcher = StopMatcher(stops)
    assert matcher.feed("b🚀") + matcher.feed(".ca") + matcher.flush() == "b"
