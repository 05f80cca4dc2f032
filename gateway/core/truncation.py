"""A conversation's prompt within the model's prompt limit: refused when longer, or without its oldest turns.

A conversation that allows it (`Conversation.truncate`, Responses' `truncation: auto`) drops its oldest exchanges
until the prompt fits. An exchange is a user turn, or an assistant turn with the tool results that answer it, so a
call is never kept without its result nor a result without its call; system turns (instructions) always stay, and
so does the last exchange (what the model is asked now). The longest suffix that fits is found by bisection: a
prompt that fits costs one rendering and one count, as without truncation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.core.prompt import render_prompt
from gateway.core.request import Conversation, ReasoningOptions, Turn
from gateway.core.served_model import ServedModel


def fitted_prompt(
    conversation: Conversation,
    model: ServedModel,
    tools: list[dict[str, Any]] | None = None,
    reasoning: ReasoningOptions | None = None,
    refuse_overlong: bool = True,
) -> str:
    """The prompt of the conversation (or of its latest exchanges, when it may be truncated) within the model's
    limit; a 400 `context_length_exceeded` naming the conversation's field when it cannot fit (unless
    `refuse_overlong` is false: then the longest is returned, for counting)."""
    return fitted_conversation(conversation, model, tools, reasoning, refuse_overlong)[0]


def fitted_conversation(
    conversation: Conversation,
    model: ServedModel,
    tools: list[dict[str, Any]] | None = None,
    reasoning: ReasoningOptions | None = None,
    refuse_overlong: bool = True,
) -> tuple[str, Conversation]:
    """`fitted_prompt` with the conversation it renders (its images are those the prompt holds)."""

    def render(turns: tuple[Turn, ...]) -> str:
        kept = Conversation(turns, conversation.param)
        return render_prompt(kept, model.chat_template, tools, reasoning, model.image_placeholder)

    prompt = render(conversation.turns)
    limit = model.max_prompt_tokens
    if limit is None:
        return prompt, conversation
    if not conversation.truncate:
        if refuse_overlong:
            model.check_prompt_length(prompt, conversation.param)
        return prompt, conversation
    if model.counter.count(prompt) <= limit:
        return prompt, conversation
    turns, prompt, fits = _latest_that_fits(conversation.turns, render, lambda text: model.counter.count(text) <= limit)
    if not fits and refuse_overlong:
        model.check_prompt_length(prompt, conversation.param)  # even the last exchange alone is too long: refused
    return prompt, Conversation(turns, conversation.param)


def exchanges(turns: tuple[Turn, ...]) -> list[int | None]:
    """Each turn's exchange number (None for a system turn, which is never dropped)."""
    numbers: list[int | None] = []
    current = -1
    for turn in turns:
        if turn.role == "system":
            numbers.append(None)
            continue
        if turn.role != "tool" or current < 0:
            current += 1  # a user or assistant turn starts an exchange; tool results join their call's
        numbers.append(current)
    return numbers


def _latest_that_fits(
    turns: tuple[Turn, ...], render: Callable[[tuple[Turn, ...]], str], fits: Callable[[str], bool]
) -> tuple[tuple[Turn, ...], str, bool]:
    """The turns without the fewest oldest exchanges whose prompt fits (at least one dropped: the whole did not
    fit, and the last always kept), their prompt, and whether it fits; the last exchange's when none does."""
    numbers = exchanges(turns)
    count = max((n for n in numbers if n is not None), default=-1) + 1

    def without(dropped: int) -> tuple[tuple[Turn, ...], str]:
        kept = tuple(t for t, n in zip(turns, numbers, strict=True) if n is None or n >= dropped)
        return kept, render(kept)

    if count <= 1:
        return (*without(0), False)  # nothing to drop: the one exchange is what the model is asked
    low, high = 1, count - 1
    best = without(high)
    if not fits(best[1]):
        return (*best, False)
    while low < high:  # `best` is `without(high)`, which fits; nothing below `low` does
        middle = (low + high) // 2
        candidate = without(middle)
        if fits(candidate[1]):
            best, high = candidate, middle
        else:
            low = middle + 1
    return (*best, True)
