"""A conversation as a prompt: its turns in the form chat templates take, the tools, and reasoning options.

Reasoning options reach templates under the names the model families' templates read: `reasoning_effort`
(gpt-oss style), `enable_thinking` (Qwen3), `thinking` (DeepSeek V3.1), `thinking_budget`; only those the
template reads are passed, so a template that knows none of them renders as before.
"""

from __future__ import annotations

from typing import Any

from gateway.core.request import Conversation, ReasoningOptions, Turn
from gateway.core.tokens import ChatTemplate


def render_prompt(
    conversation: Conversation,
    template: ChatTemplate,
    tools: list[dict[str, Any]] | None = None,
    reasoning: ReasoningOptions | None = None,
) -> str:
    """The prompt for the conversation, ending with the assistant's turn header."""
    messages = [template_message(turn) for turn in conversation.turns]
    variables = reasoning_variables(reasoning, template) if reasoning is not None else None
    return template.render(messages, tools, variables, conversation.param)


def template_message(turn: Turn) -> dict[str, Any]:
    """One turn as chat templates take it: tool call arguments as objects, reasoning as `reasoning_content`."""
    message: dict[str, Any] = {"role": turn.role, "content": turn.text}
    if turn.name is not None:
        message["name"] = turn.name
    if turn.reasoning is not None:
        message["reasoning_content"] = turn.reasoning
    if turn.tool_calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in turn.tool_calls
        ]
    if turn.call_id is not None:
        message["tool_call_id"] = turn.call_id
    if turn.is_error:
        message["is_error"] = True
    return message


def reasoning_variables(reasoning: ReasoningOptions, template: ChatTemplate) -> dict[str, Any]:
    """The template variables for the reasoning options, those the template reads."""
    candidates: dict[str, Any] = {}
    if reasoning.effort is not None:
        candidates["reasoning_effort"] = reasoning.effort
    if reasoning.enabled is not None:
        candidates["enable_thinking"] = candidates["thinking"] = reasoning.enabled
    if reasoning.budget_tokens is not None:
        candidates["thinking_budget"] = reasoning.budget_tokens
    return {name: value for name, value in candidates.items() if template.takes(name)}
