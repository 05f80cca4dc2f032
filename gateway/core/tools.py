"""Tools and tool calls across a conversation: the checks every protocol's tools go through, and their form for
chat templates.

Each problem is an `InvalidRequestError` whose `param` is the protocol's own field, carried by the spec or the
turn (`tools[2].function.parameters`, `messages[3].tool_call_id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.core.guides import check_json_schema
from gateway.core.request import Conversation, ToolOptions, ToolSpec
from gateway.errors import InvalidRequestError


def check_tools(specs: Sequence[ToolSpec]) -> None:
    """Every tool's schema can be enforced, and no two tools share a name."""
    for i, spec in enumerate(specs):
        check_json_schema(spec.parameters, spec.parameters_param)
        if spec.name in (other.name for other in specs[:i]):
            raise InvalidRequestError(f"Duplicate tool name {spec.name!r}", param=f"{spec.param}.name")


def check_tool_history(conversation: Conversation) -> None:
    """Every tool result answers a call of an earlier assistant turn (by call id)."""
    seen: set[str] = set()
    for turn in conversation.turns:
        if turn.role == "assistant":
            seen.update(call.id for call in turn.tool_calls if call.id is not None)
        elif turn.role == "tool" and (turn.call_id is None or turn.call_id not in seen):
            field = turn.call_id_param.rsplit(".", 1)[-1]
            raise InvalidRequestError(
                f"{field} {turn.call_id!r} answers no tool call of an earlier assistant message",
                param=turn.call_id_param,
            )


def callable_tools(tools: ToolOptions) -> list[ToolSpec]:
    """The tools the model may call: all of them, or the `allowed` subset; none with `tool_choice` none."""
    if tools.choice.mode == "none":
        return []
    allowed = tools.choice.allowed
    return [spec for spec in tools.specs if allowed is None or spec.name in allowed]


def template_tools(tools: ToolOptions) -> list[dict[str, Any]] | None:
    """The tools as chat templates take them (None when the model may not call any)."""
    if not tools.specs or tools.choice.mode == "none":
        return None
    return [spec.definition or template_definition(spec) for spec in tools.specs]


def template_definition(spec: ToolSpec) -> dict[str, Any]:
    """A tool in the chat templates' format (Hugging Face's, which is OpenAI's function tool)."""
    function: dict[str, Any] = {"name": spec.name}
    if spec.description is not None:
        function["description"] = spec.description
    function["parameters"] = spec.parameters
    if spec.strict:
        function["strict"] = True
    return {"type": "function", "function": function}
