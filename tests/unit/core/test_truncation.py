"""A conversation fitted into the prompt limit: refused when too long, or its oldest exchanges dropped when it may be
truncated (a call never without its result), system turns and the last exchange always kept."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.request import Conversation, ToolCall, Turn
from gateway.core.served_model import ServedModel
from gateway.core.tokens import ChatTemplate, TokenCounter
from gateway.core.truncation import exchanges, fitted_prompt
from gateway.errors import InvalidRequestError
from tests.unit.fake_engine import FakeEngine


def model(tokenizer: Any, limit: int | None) -> ServedModel:
    return ServedModel("m", FakeEngine(), ChatTemplate(tokenizer), TokenCounter(tokenizer), 16, 100, limit)


def long_conversation(truncate: bool) -> Conversation:
    filler = " ".join(f"word{i}" for i in range(40))
    turns = (
        Turn("system", "Be brief."),
        Turn("user", f"first {filler}"),
        Turn("assistant", "", tool_calls=(ToolCall("c1", "look", {"q": "x"}),)),
        Turn("tool", f"result {filler}", call_id="c1"),
        Turn("assistant", f"second {filler}"),
        Turn("user", "LAST question"),
    )
    return Conversation(turns, param="input", truncate=truncate)


def test_exchanges_keep_calls_with_their_results_and_system_turns_out() -> None:
    assert exchanges(long_conversation(True).turns) == [None, 0, 1, 1, 2, 3]


def test_a_prompt_within_the_limit_is_the_whole_conversation(tokenizer: Any) -> None:
    conversation = long_conversation(True)
    assert fitted_prompt(conversation, model(tokenizer, None)) == fitted_prompt(conversation, model(tokenizer, 10_000))
    assert "first word0" in fitted_prompt(conversation, model(tokenizer, 10_000))


def test_too_long_without_truncation_is_a_400_naming_the_field(tokenizer: Any) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        fitted_prompt(long_conversation(False), model(tokenizer, 60))
    assert (refused.value.param, refused.value.code) == ("input", "context_length_exceeded")
    counted = fitted_prompt(long_conversation(False), model(tokenizer, 60), refuse_overlong=False)
    assert "first word0" in counted


def test_truncation_drops_the_fewest_oldest_exchanges(tokenizer: Any) -> None:
    whole = TokenCounter(tokenizer).count(fitted_prompt(long_conversation(True), model(tokenizer, None)))
    prompt = fitted_prompt(long_conversation(True), model(tokenizer, whole - 10))
    assert "first word0" not in prompt and "result word0" in prompt  # one exchange dropped, the call's result kept
    assert "Be brief." in prompt and "LAST question" in prompt
    shortest = fitted_prompt(long_conversation(True), model(tokenizer, 40))
    assert "word0" not in shortest and "Be brief." in shortest and "LAST question" in shortest


def test_truncation_refuses_when_even_the_last_exchange_is_too_long(tokenizer: Any) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        fitted_prompt(long_conversation(True), model(tokenizer, 5))
    assert refused.value.code == "context_length_exceeded"
    only = Conversation((Turn("user", " ".join(["word"] * 50)),), param="input", truncate=True)
    with pytest.raises(InvalidRequestError):
        fitted_prompt(only, model(tokenizer, 20))
