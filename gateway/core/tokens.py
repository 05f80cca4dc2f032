"""The model's Hugging Face tokenizer: chat templates and token counts when Triton does not report them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.errors import ConfigurationError, InvalidRequestError, UnsupportedFeatureError


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
        self._tokenizer = tokenizer

    def count(self, text: str) -> int:
        """Number of tokens in `text`."""
        return len(self._tokenizer.encode(text, add_special_tokens=False)) if text else 0


class ChatTemplate:
    """Renders OpenAI messages into a prompt with the tokenizer's (or a configured) Jinja chat template."""

    def __init__(self, tokenizer: Any, template_file: Path | None = None) -> None:
        self._tokenizer = tokenizer
        self._template = template_file.read_text() if template_file else None
        if self._template is None and not getattr(tokenizer, "chat_template", None):
            raise ConfigurationError("the tokenizer has no chat template; pass --chat-template FILE")

    @property
    def source(self) -> str:
        """The Jinja source in use (to detect the model family's parsers)."""
        return self._template or str(getattr(self._tokenizer, "chat_template", "") or "")

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt for these messages (and tool definitions), ending with the assistant's turn header."""
        try:
            return str(
                self._tokenizer.apply_chat_template(
                    messages, tools=tools, chat_template=self._template, tokenize=False, add_generation_prompt=True
                )
            )
        except Exception as exc:  # jinja raises TemplateError for messages the template refuses
            raise InvalidRequestError(
                f"the chat template could not render the messages: {exc}", param="messages"
            ) from exc


def message_text(content: Any, index: int) -> str:
    """A message's content as one string: a string, or the concatenated text parts of a list."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part_index, part in enumerate(content):
        if part.type != "text":
            raise UnsupportedFeatureError(
                f"content parts of type '{part.type}' are not supported (text only)",
                param=f"messages[{index}].content[{part_index}]",
            )
        texts.append(part.text)
    return "".join(texts)
