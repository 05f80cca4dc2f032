"""A model as clients see it: its public name, the engine behind it, its tokenizer-side helpers and limits."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from functools import cached_property

from gateway.core.guide_checker import GuideChecker, default_guide_checker
from gateway.core.images import ImageLoader
from gateway.core.tokens import ChatTemplate, TokenCounter
from gateway.engine.base import Engine
from gateway.errors import InvalidRequestError, NotFoundError


@dataclass
class ServedModel:
    """One served model name and what serves it."""

    name: str
    engine: Engine
    chat_template: ChatTemplate
    counter: TokenCounter
    default_max_tokens: int
    max_tokens_limit: int
    max_prompt_tokens: int | None = None
    max_n: int = 8
    tool_parser: str | None = None  # parsers/ registry names (--tool-call-parser, --reasoning-parser)
    reasoning_parser: str | None = None
    compact_json_guides: bool = True  # JSON guides without free whitespace (--guided-json-whitespace compact)
    special_markers: frozenset[str] = frozenset()  # the parsers' markers that are special tokens of the tokenizer
    guide_checker: GuideChecker = field(default_factory=default_guide_checker)  # guide limits and checks
    images: ImageLoader = field(default_factory=ImageLoader)  # reads and checks request images (limits, fetching)
    image_placeholder: str = "<image>"  # where an image goes in the prompt (the family's: <image>, <|image|>)
    created: int = field(default_factory=lambda: int(time.time()))

    @cached_property
    def fingerprint(self) -> str:
        """Stable for a given gateway version, model and upstream (OpenAI's `system_fingerprint`; computed once)."""
        from gateway import __version__

        digest = hashlib.sha256(f"{__version__}|{self.name}|{self.engine.info().upstream}".encode()).hexdigest()
        return f"fp_{digest[:10]}"

    def resolve_max_tokens(self, requested: int | None, param: str = "max_tokens") -> int:
        """The max new tokens for a request: its own value, or the default; never above the limit (a 400 naming
        `param`, the field that asked)."""
        if requested is None:
            return self.default_max_tokens
        if requested > self.max_tokens_limit:
            raise InvalidRequestError(
                f"{param} is too large: {requested}. This model supports at most {self.max_tokens_limit} "
                "completion tokens.",
                param=param,
                code="invalid_value",
            )
        return requested

    def check_prompt_length(self, prompt: str, param: str) -> None:
        """400 when the prompt is longer than the configured limit (counted with the model's tokenizer)."""
        if self.max_prompt_tokens is None:
            return
        tokens = self.counter.count(prompt)
        if tokens > self.max_prompt_tokens:
            raise InvalidRequestError(
                f"This model's maximum prompt length is {self.max_prompt_tokens} tokens. However, your prompt "
                f"has {tokens} tokens. Please shorten it.",
                param=param,
                code="context_length_exceeded",
            )


def unknown_model(name: str) -> NotFoundError:
    """OpenAI's 404 for a model that does not exist, or that the caller may not use (the same answer)."""
    shown = name if len(name) <= 100 else name[:100] + "..."
    return NotFoundError(
        f"The model '{shown}' does not exist or you do not have access to it.", param="model", code="model_not_found"
    )


class ModelRegistry:
    """Served models by name, and alias -> name."""

    def __init__(self, models: list[ServedModel], aliases: dict[str, str] | None = None) -> None:
        self._models = {m.name: m for m in models}
        self._names = {name: name for name in self._models} | (aliases or {})

    def get(self, name: str) -> ServedModel:
        """The model called `name` (or an alias of it), or a 404 like OpenAI's."""
        canonical = self._names.get(name)
        model = self._models.get(canonical) if canonical is not None else None
        if model is None:
            raise unknown_model(name)
        return model

    def all(self) -> list[ServedModel]:
        """Every served model (once, whatever its aliases)."""
        return list(self._models.values())

    def names(self) -> list[tuple[str, ServedModel]]:
        """Every name and alias, with the model it serves."""
        return [(name, self._models[canonical]) for name, canonical in self._names.items()]
