"""The request's `tools` and `tool_choice`, validated, and the tool-call history of its messages.

Each problem is an `InvalidRequestError` whose `param` names the field, such as `tools[2].function.parameters`,
`tool_choice` or `messages[3].tool_call_id`. Tools reach the chat template (and the prompt tensor) as sent, so
every string in them must be valid Unicode; their number and size are bounded (openai/schema_bounds.py) before
any schema is checked, and a schema's expensive checks are left to each spec's `check` (GuideChecker.run).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.errors import InvalidRequestError
from gateway.openai.guide_checker import GuideCheck, GuideChecker, default_guide_checker
from gateway.openai.guides import check_json_schema
from gateway.openai.protocol import ChatMessage
from gateway.openai.schema_bounds import compact_json, json_value_problem

_NAME = re.compile(r"[A-Za-z0-9_\-.]{1,64}")
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
# Decoded `arguments` nest no deeper than a request body may (pydantic refuses bodies nested ~200 levels deep).
MAX_ARGUMENTS_DEPTH = 200


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One function the model may call."""

    name: str
    parameters: dict[str, Any]  # a JSON schema for the arguments object
    description: str | None = None
    strict: bool = False
    check: GuideCheck | None = field(default=None, compare=False, repr=False)  # the schema's, still to run


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`tool_choice`: `none`, `auto`, `required`, or `function` with the function's `name`."""

    mode: Literal["none", "auto", "required", "function"]
    name: str | None = None

    @property
    def forced(self) -> bool:
        """Whether the model must call a tool (a guide then makes it)."""
        return self.mode in ("required", "function")


def parse_tools(tools: Any, checker: GuideChecker | None = None) -> list[ToolSpec]:
    """The request's `tools` (None or a list of `{"type": "function", "function": {...}}`) as ToolSpecs, within
    the checker's limits on their number and total size."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequestError("'tools' must be a list of tools", param="tools")
    checker = checker or default_guide_checker()
    limits = checker.limits
    if len(tools) > limits.max_tools:
        raise InvalidRequestError(
            f"There are {len(tools)} tools; this gateway takes at most {limits.max_tools} (--max-tools)", param="tools"
        )
    specs: list[ToolSpec] = []
    total = 0
    for i, tool in enumerate(tools):
        total += len(compact_json(tool, f"tools[{i}]"))  # also: every string in it is valid Unicode
        if total > limits.max_tools_bytes:
            raise InvalidRequestError(
                f"The tools up to tools[{i}] take {total} bytes as JSON; this gateway takes at most "
                f"{limits.max_tools_bytes} (--max-tools-bytes)",
                param=f"tools[{i}]",
            )
        specs.append(_tool(tool, f"tools[{i}]", checker))
        if specs[-1].name in (spec.name for spec in specs[:-1]):
            raise InvalidRequestError(f"Duplicate tool name {specs[-1].name!r}", param=f"tools[{i}].function.name")
    return specs


def _tool(tool: Any, where: str, checker: GuideChecker) -> ToolSpec:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise InvalidRequestError("Each tool must be an object with type 'function'", param=f"{where}.type")
    function = tool.get("function")
    if not isinstance(function, dict):
        raise InvalidRequestError("The tool's 'function' must be an object", param=f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
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
    check = None
    if parameters is None:
        parameters = _EMPTY_PARAMETERS
    elif not isinstance(parameters, dict):
        raise InvalidRequestError("'parameters' must be a JSON schema object", param=f"{where}.function.parameters")
    else:
        param = f"{where}.function.parameters"
        check = GuideCheck("json_schema", check_json_schema(parameters, param, checker), param)
    return ToolSpec(name=name, parameters=parameters, description=description, strict=bool(strict), check=check)


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


def check_tool_history(messages: Sequence[ChatMessage]) -> None:
    """Every `tool` message answers a call of an earlier assistant message (by `tool_call_id`)."""
    seen: set[str] = set()
    for i, message in enumerate(messages):
        if message.role == "assistant" and message.tool_calls:
            seen.update(call["id"] for call in message.tool_calls if isinstance(call.get("id"), str))
        elif message.role == "tool":
            if message.tool_call_id is None:
                raise InvalidRequestError("A tool message needs 'tool_call_id'", param=f"messages[{i}].tool_call_id")
            if message.tool_call_id not in seen:
                raise InvalidRequestError(
                    f"tool_call_id {message.tool_call_id!r} answers no tool call of an earlier assistant message",
                    param=f"messages[{i}].tool_call_id",
                )


def template_tool_calls(tool_calls: Sequence[dict[str, Any]], message_index: int) -> list[dict[str, Any]]:
    """An assistant message's OpenAI `tool_calls` in the form chat templates expect: arguments as a dict."""
    converted = []
    for j, call in enumerate(tool_calls):
        where = f"messages[{message_index}].tool_calls[{j}]"
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequestError("A tool call needs 'function' with a 'name'", param=f"{where}.function")
        arguments = function.get("arguments", "{}")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except (ValueError, RecursionError):
                arguments = None
        if not isinstance(arguments, dict):
            raise InvalidRequestError(
                "The tool call's 'arguments' must be a JSON object encoded as a string",
                param=f"{where}.function.arguments",
            )
        # Decoded from a string, they were never checked: `\\udXXX` escapes and nesting reach the template here.
        problem = json_value_problem(arguments, MAX_ARGUMENTS_DEPTH)
        if problem is not None:
            raise InvalidRequestError(
                f"The tool call's 'arguments' cannot be used: {problem}", param=f"{where}.function.arguments"
            )
        converted.append(
            {
                "id": call.get("id"),
                "type": call.get("type", "function"),
                "function": {"name": function["name"], "arguments": arguments},
            }
        )
    return converted
