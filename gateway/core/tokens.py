"""The model's Hugging Face tokenizer: chat templates and token counts when Triton does not report them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gateway.engine.token_ids import TextEncoder
from gateway.errors import ConfigurationError, InvalidRequestError

# A template that tests a content part's type against "image" renders image parts itself (Hugging Face's
# vision templates: `item['type'] == 'image'`, `selectattr('type', 'equalto', 'image')`).
IMAGE_PART_TEST = re.compile(r"""type['"]?\]?\s*(?:==|,\s*['"]equalto['"]\s*,)\s*['"]image['"]""")


def load_tokenizer(path: str | Path) -> Any:
    """Load a local Hugging Face tokenizer folder (never from a hub)."""
    from transformers import AutoTokenizer  # heavy import, only at start-up

    folder = Path(path)
    if not (folder / "tokenizer_config.json").exists() and not (folder / "tokenizer.json").exists():
        raise ConfigurationError(f"--tokenizer {folder} is not a Hugging Face tokenizer folder")
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


class TokenCounter:
    """Counts tokens the way the upstream preprocessing would (no special tokens added)."""

    def __init__(self, tokenizer: Any) -> None:
        self._encoder = TextEncoder.of(tokenizer)  # shared with the engine: a prompt is tokenized once

    def count(self, text: str) -> int:
        """Number of tokens in `text`."""
        return self._encoder.count(text)


class ChatTemplate:
    """Renders messages into a prompt with the tokenizer's (or a configured) Jinja chat template.

    The messages are in the form Hugging Face templates take (role, content, tool_calls with arguments as
    objects, tool_call_id, reasoning_content), which core/prompt.py builds from a conversation.
    """

    def __init__(self, tokenizer: Any, template_file: Path | None = None) -> None:
        self._tokenizer = tokenizer
        self._template = template_file.read_text() if template_file else None
        if self._template is None and not getattr(tokenizer, "chat_template", None):
            raise ConfigurationError("the tokenizer has no chat template; pass --chat-template FILE")
        self._takes: dict[str, bool] = {}

    @property
    def source(self) -> str:
        """The Jinja source in use (to detect the model family's parsers)."""
        return self._template or str(getattr(self._tokenizer, "chat_template", "") or "")

    @property
    def renders_image_parts(self) -> bool:
        """Whether the template renders `{"type": "image"}` content parts (else images go inline as text)."""
        found = self._takes.get(" image parts")
        if found is None:
            found = self._takes[" image parts"] = IMAGE_PART_TEST.search(self.source) is not None
        return found

    def takes(self, variable: str) -> bool:
        """Whether the template reads `variable` (e.g. `enable_thinking`) from its context."""
        found = self._takes.get(variable)
        if found is None:
            found = self._takes[variable] = re.search(rf"\b{re.escape(variable)}\b", self.source) is not None
        return found

    def render(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        variables: dict[str, Any] | None = None,
        param: str = "messages",
    ) -> str:
        """The prompt for these messages (and tool definitions, and template `variables`), ending with the
        assistant's turn header; a template failure is a 400 naming `param`."""
        try:
            return str(
                self._tokenizer.apply_chat_template(
                    messages,
                    tools=tools,
                    chat_template=self._template,
                    tokenize=False,
                    add_generation_prompt=True,
                    **(variables or {}),
                )
            )
        except Exception as exc:  # jinja raises TemplateError for messages the template refuses
            raise InvalidRequestError(f"the chat template could not render the messages: {exc}", param=param) from exc
