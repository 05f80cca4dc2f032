"""Messages' generation, reasoning and output options in the core's terms.

- `thinking`: `enabled` (with `budget_tokens`, at least 1024 and below `max_tokens`, as Anthropic's), `adaptive`
  and `between_tools` turn the template's thinking switch on (`enable_thinking` / `thinking`, with the budget as
  `thinking_budget`), `disabled` or none turn it off; `display: omitted` is refused (the thinking would be lost
  to later turns: the signature does not carry it);
- `output_config.effort` is the templates' `reasoning_effort` (`xhigh` and `max` as `high`, the most they take);
- `output_config.format` (or the beta's `output_format`) `json_schema` is an output constraint the engine
  enforces;
- `context_management`: `clear_thinking_20251015` is applied (the thinking of all but the last `keep` assistant
  turns leaves the prompt); other edits need server-side state this gateway does not keep, and are refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.core.request import Conversation, OutputConstraint, ReasoningOptions
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.protocols.messages.request import ConversationFields

MIN_THINKING_BUDGET = 1024
_THINKING_ON = ("enabled", "adaptive", "between_tools")
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
CLEAR_THINKING = "clear_thinking_20251015"


def reasoning_options(body: ConversationFields, max_tokens: int | None) -> ReasoningOptions:
    """`thinking` and `output_config.effort` as the core's reasoning options."""
    enabled, budget = _thinking(body.thinking, max_tokens)
    return ReasoningOptions(effort=_effort(body.output_config), enabled=enabled, budget_tokens=budget)


def _thinking(thinking: Any, max_tokens: int | None) -> tuple[bool, int | None]:
    if thinking is None:
        return False, None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "disabled":
        return False, None
    if kind not in _THINKING_ON:
        raise InvalidRequestError(
            "thinking.type must be 'enabled', 'adaptive', 'between_tools' or 'disabled'", param="thinking.type"
        )
    display = thinking.get("display")
    if display not in (None, "summarized"):
        raise UnsupportedFeatureError(
            "thinking.display other than 'summarized' is not supported: omitted thinking could not be given back "
            "to the model in later turns",
            param="thinking.display",
        )
    budget = thinking.get("budget_tokens")
    if kind != "enabled":
        return True, None
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
        raise InvalidRequestError(
            f"thinking.budget_tokens must be an integer of at least {MIN_THINKING_BUDGET}",
            param="thinking.budget_tokens",
        )
    if max_tokens is not None and budget >= max_tokens:
        raise InvalidRequestError("thinking.budget_tokens must be less than max_tokens", param="thinking.budget_tokens")
    return True, budget


def _effort(output_config: Any) -> str | None:
    if output_config is None:
        return None
    if not isinstance(output_config, dict):
        raise InvalidRequestError("'output_config' must be an object", param="output_config")
    effort = output_config.get("effort")
    if effort is None:
        return None
    if effort not in _EFFORTS:
        raise InvalidRequestError(
            "output_config.effort must be one of " + ", ".join(_EFFORTS), param="output_config.effort"
        )
    return _EFFORTS[effort]


def output_constraint(body: ConversationFields) -> OutputConstraint | None:
    """The JSON schema the output must match (`output_config.format`, or the beta's `output_format`), or None."""
    config_format = body.output_config.get("format") if isinstance(body.output_config, dict) else None
    if config_format is not None and body.output_format is not None:
        raise InvalidRequestError("Give output_config.format or output_format, not both", param="output_format")
    if config_format is not None:
        return _format_constraint(config_format, "output_config.format")
    if body.output_format is not None:
        return _format_constraint(body.output_format, "output_format")
    return None


def _format_constraint(spec: Any, where: str) -> OutputConstraint:
    if not isinstance(spec, dict) or spec.get("type") != "json_schema":
        raise InvalidRequestError(f"{where}.type must be 'json_schema'", param=f"{where}.type")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"{where}.schema must be a JSON schema object", param=f"{where}.schema")
    return OutputConstraint("json_schema", schema, f"{where}.schema", where)


def managed_context(conversation: Conversation, context_management: Any) -> Conversation:
    """The conversation with the client's context edits applied."""
    if context_management is None:
        return conversation
    edits = context_management.get("edits") if isinstance(context_management, dict) else None
    if not isinstance(edits, list):
        raise InvalidRequestError("context_management.edits must be a list", param="context_management.edits")
    for index, edit in enumerate(edits):
        where = f"context_management.edits[{index}]"
        kind = edit.get("type") if isinstance(edit, dict) else None
        if kind != CLEAR_THINKING:
            shown = kind if isinstance(kind, str) and len(kind) <= 64 else "?"
            raise UnsupportedFeatureError(
                f"Context edit '{shown}' is not supported (only {CLEAR_THINKING})", param=f"{where}.type"
            )
        conversation = _clear_thinking(conversation, _thinking_turns_kept(edit.get("keep"), f"{where}.keep"))
    return conversation


def _thinking_turns_kept(keep: Any, where: str) -> int | None:
    """How many of the last assistant turns with thinking keep it (None: all); Anthropic's default is 1."""
    if keep is None:
        return 1
    if keep == "all":
        return None
    value = keep.get("value") if isinstance(keep, dict) and keep.get("type") == "thinking_turns" else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError('keep must be \'all\' or {"type": "thinking_turns", "value": N}', param=where)
    return value


def _clear_thinking(conversation: Conversation, kept: int | None) -> Conversation:
    if kept is None:
        return conversation
    thinking = [i for i, turn in enumerate(conversation.turns) if turn.reasoning is not None]
    cleared = set(thinking[: len(thinking) - kept] if kept else thinking)
    if not cleared:
        return conversation
    turns = tuple(
        dataclasses.replace(turn, reasoning=None) if i in cleared else turn for i, turn in enumerate(conversation.turns)
    )
    return Conversation(turns, conversation.param)
