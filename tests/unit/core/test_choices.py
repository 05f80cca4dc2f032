"""A choice's finish: the stop string that ended it is reported (Messages' `stop_sequence`)."""

from __future__ import annotations

from typing import Any

from gateway.core.choices import Choice
from gateway.core.events import FinishEvent, TextEvent
from gateway.core.processors import stop_chain
from gateway.core.stops import StopMatcher
from gateway.core.tokens import TokenCounter
from gateway.engine.base import Delta, GenerationRequest


def test_the_stop_string_that_matched_is_on_the_finish_event(tokenizer: Any) -> None:
    request = GenerationRequest("r", "prompt", 16, stream=True, stop=("END", "STOP"))
    choice = Choice(0, 0, request, TokenCounter(tokenizer), stop_chain(request))
    assert choice.on_delta(Delta("Hello S", 2)) == [TextEvent("Hello ")]
    events = choice.on_delta(Delta("TOP and more", 3))
    assert isinstance(events[-1], FinishEvent)
    assert (events[-1].reason, events[-1].stop_sequence) == ("stop", "STOP")


def test_a_choice_the_engine_ended_has_no_stop_sequence(tokenizer: Any) -> None:
    request = GenerationRequest("r", "prompt", 16, stream=True, stop=("END",))
    choice = Choice(0, 0, request, TokenCounter(tokenizer), stop_chain(request))
    finish = choice.on_delta(Delta("all done", 2, finish_reason="stop"))[-1]
    assert isinstance(finish, FinishEvent) and finish.stop_sequence is None


def test_the_matcher_names_the_stop_that_completes_first() -> None:
    matcher = StopMatcher(["b🚀.", "🚀"])
    assert matcher.feed("ab🚀.") == "ab" and matcher.stop == "🚀"
