"""Tools and tool calls across a conversation: the checks every protocol's tools go through, and their form for
chat templates.

Each problem is an `InvalidRequestError` whose `param` is the protocol's own field, carried by the spec or the
turn (`tools[2].function.parameters`, `messages[3].tool_call_id`). Tools reach the chat template (and the prompt
tensor) as sent, so every string in them must be valid Unicode; their number and size are bounded
(core/schema_bounds.py) before any schema is checked, and a schema's expensive checks are left to the checks
`check_tools` returns (GuideChecker.run).
"""

from __future__ import annotations

from typing import Any

from gateway.core.guide_checker import GuideCheck, GuideChecker
from gateway.core.guides import check_json_schema
from gateway.core.request import Conversation, ToolOptions, ToolSpec
from gateway.core.schema_bounds import compact_json
from gateway.errors import InvalidRequestError


def check_tools(tools: ToolOptions, checker: GuideChecker) -> list[GuideCheck]:
    """Every tool within the checker's limits (their number and total size, valid Unicode throughout, each schema's
    bounds), no two sharing a name; what is left to check of their schemas, for GuideChecker.run."""
    specs, limits = tools.specs, checker.limits
    if len(specs) > limits.max_tools:
        raise InvalidRequestError(
            f"There are {len(specs)} tools; this gateway takes at most {limits.max_tools} (--max-tools)",
            param=tools.param,
        )
    checks = []
    total = 0
    for i, spec in enumerate(specs):
        where = f"{tools.param}[{i}]"
        total += len(compact_json(spec.definition or template_definition(spec), where))  # also: valid Unicode
        if total > limits.max_tools_bytes:
            raise InvalidRequestError(
                f"The tools up to {where} take {total} bytes as JSON; this gateway takes at most "
                f"{limits.max_tools_bytes} (--max-tools-bytes)",
                param=where,
            )
        text = check_json_schema(spec.parameters, spec.parameters_param, checker)
        checks.append(GuideCheck("json_schema", text, spec.parameters_param))
        if spec.name in (other.name for other in specs[:i]):
            raise InvalidRequestError(f"Duplicate tool name {spec.name!r}", param=f"{spec.param}.name")
    return checks


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
