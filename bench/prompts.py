"""Prompts of a given token length, built from the dev tokenizer and its corpus, in the forms each client sends."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import gateway.devstack

CORPUS = Path(gateway.devstack.__file__).resolve().parent / "corpus" / "english.txt"
VARIANTS = 16  # distinct prompts per length (the synthetic engine's tokens depend on the prompt)


@dataclass(frozen=True)
class Prompt:
    """One prompt: the user message, the chat-rendered text (ensemble/BLS input) and its token ids."""

    user_text: str
    rendered: str
    ids: tuple[int, ...]


@cache
def load_tokenizer(model_dir: str) -> Any:
    """The dev model's Hugging Face tokenizer (local files only)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)


def make_prompts(model_dir: str, tokens: int, variants: int = VARIANTS) -> list[Prompt]:
    """`variants` distinct user messages of about `tokens` tokens each, rendered with the chat template."""
    tokenizer = load_tokenizer(model_dir)
    words = CORPUS.read_text().split()
    prompts = []
    for variant in range(variants):
        shift = (variant * 37) % len(words)
        rotated = words[shift:] + words[:shift]
        ids: list[int] = []
        while len(ids) < tokens:
            ids += tokenizer.encode(" ".join(rotated), add_special_tokens=False)
        user_text = tokenizer.decode(ids[:tokens]).strip()
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
        )
        rendered_ids = tokenizer.encode(rendered, add_special_tokens=False)
        prompts.append(Prompt(user_text, rendered, tuple(rendered_ids)))
    return prompts


def chat_template(model_dir: str) -> dict[str, str]:
    """The tokenizer's chat template and special tokens (LiteLLM's proxy renders prompts with these)."""
    tokenizer = load_tokenizer(model_dir)
    return {
        "chat_template": tokenizer.chat_template,
        "bos_token": tokenizer.bos_token or "",
        "eos_token": tokenizer.eos_token or "",
    }
