"""The parsers a served model gets (given by name, or what its chat template implies), and which of their markers
are special tokens of its tokenizer (a `skip_special_tokens` decode drops those, e.g. Mistral's `[TOOL_CALLS]`).

Used at start-up by the app and by `trtllm-gateway repo` (which then keeps special tokens in postprocessing).
"""

from __future__ import annotations

from gateway.errors import ConfigurationError
from gateway.openai.parsers import REASONING_PARSERS, TOOL_PARSERS, detect_parsers, markers_lost_to


def resolve_parsers(
    tool_call_parser: str, reasoning_parser: str, template_source: str, where: str = ""
) -> tuple[str | None, str | None]:
    """The tool-call and reasoning parser names: given, `none`, or `auto` (what the chat template implies).
    `where` names the models-file entry (empty: the flags)."""
    detected = detect_parsers(template_source)
    chosen = []
    for value, found, known, field in (
        (tool_call_parser, detected.tool, TOOL_PARSERS, "tool_call_parser"),
        (reasoning_parser, detected.reasoning, REASONING_PARSERS, "reasoning_parser"),
    ):
        flag = f"{where}, field '{field}':" if where else "--" + field.replace("_", "-")
        if value == "auto":
            chosen.append(found)
        elif value == "none":
            chosen.append(None)
        elif value in known:
            chosen.append(value)
        else:
            raise ConfigurationError(f"{flag} {value!r}: use one of {sorted(known)}, auto or none")
    return chosen[0], chosen[1]


def special_token_texts(tokenizer: object) -> set[str]:
    """Every token a `skip_special_tokens` decode drops: the named special tokens and the added tokens marked
    special (Mistral's control tokens such as `[TOOL_CALLS]` are only the latter)."""
    texts = set(getattr(tokenizer, "all_special_tokens", ()) or ())
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    texts.update(str(token.content) for token in added.values() if getattr(token, "special", False))
    return texts


def special_markers(tokenizer: object, tool_parser: str | None, reasoning_parser: str | None) -> frozenset[str]:
    """The markers of these parsers that are special tokens of `tokenizer`."""
    return frozenset(markers_lost_to(special_token_texts(tokenizer), tool_parser, reasoning_parser))
