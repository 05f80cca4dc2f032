"""Token usage with OpenAI's arithmetic."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one choice, or of a whole request once summed."""

    prompt_tokens: int
    completion_tokens: int

    def to_dict(self) -> dict[str, int]:
        """OpenAI `usage` object."""
        total = self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": total}


def request_usage(choices: list[tuple[int, Usage]]) -> Usage:
    """Usage of a request from (prompt index, usage) per choice: each prompt is counted once, however many
    choices it has (OpenAI's rule for n > 1), completion tokens of every choice are added."""
    prompts: dict[int, int] = {}
    for prompt_index, usage in choices:
        prompts.setdefault(prompt_index, usage.prompt_tokens)
    return Usage(sum(prompts.values()), sum(usage.completion_tokens for _, usage in choices))
