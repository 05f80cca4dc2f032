"""Token usage per choice, and per request with the APIs' arithmetic (each prompt counted once)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one choice, or of a whole request once summed."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None  # prompt tokens the engine found in its KV cache, when it reports them


def request_usage(choices: list[tuple[int, Usage]]) -> Usage:
    """Usage of a request from (prompt index, usage) per choice: each prompt is counted once, however many
    choices it has (OpenAI's rule for n > 1), completion tokens of every choice are added."""
    prompts: dict[int, Usage] = {}
    for prompt_index, usage in choices:
        prompts.setdefault(prompt_index, usage)
    cached = [u.cached_tokens for u in prompts.values() if u.cached_tokens is not None]
    return Usage(
        sum(u.prompt_tokens for u in prompts.values()),
        sum(usage.completion_tokens for _, usage in choices),
        sum(cached) if cached else None,
    )
