"""Chat's `tools`, `tool_choice` and assistant `tool_calls`, read into the core's ToolSpec, ToolChoice and ToolCall.

Each problem is an `InvalidRequestError` whose `param` names the field, such as `tools[2].function.name`,
`tool_choice` or `messages[3].tool_calls[0].function.arguments`. The tools are bounded and their schemas checked
by the core (core/tools.py), with the params set here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.core.request import ToolCall, ToolChoice, ToolSpec
from gateway.errors import InvalidRequestError
from gateway.protocols.openai_shared import EMPTY_PARAMETERS, TOOL_NAME, arguments_problem, decode_arguments


def parse_tools(tools: Any) -> tuple[ToolSpec, ...]:
    """The request's `tools` (None or a list of `{"type": "function", "function": {...}}`) as ToolSpecs."""
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise InvalidRequestError("'tools' must be a list of tools", param="tools")
    return tuple(_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools))


def _tool(tool: Any, where: str) -> ToolSpec:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise InvalidRequestError("Each tool must be an object with type 'function'", param=f"{where}.type")
    function = tool.get("function")
    if not isinstance(function, dict):
        raise InvalidRequestError("The tool's 'function' must be an object", param=f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise InvalidRequestError(
            "The function name must be 1 to 64 letters, digits, '_', '-' or '.'", param=f"{where}.function.name"
        )
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequestError("'description' must be a string", param=f"{where}.function.description")
    strict = function.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise InvalidRequestError("'strict' must be a boolean", param=f"{where}.function.strict")
    parameters = function.get("parameters")
    if parameters is None:
        parameters = EMPTY_PARAMETERS
    elif not isinstance(parameters, dict):
        raise InvalidRequestError("'parameters' must be a JSON schema object", param=f"{where}.function.parameters")
    return ToolSpec(
        name=name,
        parameters=parameters,
        description=description,
        strict=bool(strict),
        param=f"{where}.function",
        parameters_param=f"{where}.function.parameters",
        definition=tool,  # chat's tools are already in the templates' format: given to them as the client wrote them
    )


def parse_tool_choice(tool_choice: Any, tools: Sequence[ToolSpec]) -> ToolChoice:
    """`tool_choice` checked against the tools (default: `auto` with tools, `none` without). `auto` without tools
    is taken as `none` (clients and frameworks send it as a default); what needs a tool is a 400."""
    if tool_choice is None or (tool_choice == "auto" and not tools):
        return ToolChoice("auto" if tools else "none")
    if tool_choice in ("none", "auto", "required"):
        if tool_choice == "required" and not tools:
            raise InvalidRequestError(f"tool_choice {tool_choice!r} needs 'tools'", param="tool_choice")
        return ToolChoice(tool_choice)
    function = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(tool_choice, dict) or tool_choice.get("type") != "function" or not isinstance(name, str):
        raise InvalidRequestError(
            'tool_choice must be \'none\', \'auto\', \'required\' or {"type": "function", "function": {"name": ...}}',
            param="tool_choice",
        )
    if name not in (tool.name for tool in tools):
        raise InvalidRequestError(f"tool_choice names {name!r}, which is not among 'tools'", param="tool_choice")
    return ToolChoice("function", name)


def parse_tool_calls(tool_calls: Sequence[dict[str, Any]], message_index: int) -> tuple[ToolCall, ...]:
    """An assistant message's `tool_calls`, arguments decoded from their JSON string."""
    calls = []
    for j, call in enumerate(tool_calls):
        where = f"messages[{message_index}].tool_calls[{j}]"
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequestError("A tool call needs 'function' with a 'name'", param=f"{where}.function")
        arguments = function.get("arguments", "{}")
        if isinstance(arguments, str):
            arguments = decode_arguments(arguments)
        if not isinstance(arguments, dict):
            raise InvalidRequestError(
                "The tool call's 'arguments' must be a JSON object encoded as a string",
                param=f"{where}.function.arguments",
            )
        problem = arguments_problem(arguments)
        if problem is not None:
            raise InvalidRequestError(
                f"The tool call's 'arguments' cannot be used: {problem}", param=f"{where}.function.arguments"
            )
        call_id = call.get("id")
        calls.append(ToolCall(call_id if isinstance(call_id, str) else None, function["name"], arguments))
    return tuple(calls)
