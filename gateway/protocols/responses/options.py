"""Responses' `tools`, `tool_choice`, `text.format`, `reasoning` and `include` in the core's terms.

Tools are function tools in Responses' flat shape `{"type": "function", "name", "description", "parameters",
"strict"}`; any other type (`web_search`, `file_search`, `mcp`, `custom`, ...) is a 400 naming `tools[i].type`.
`tool_choice` is `none`, `auto`, `required`, `{"type": "function", "name"}` or `{"type": "allowed_tools", "mode",
"tools"}`. `text.format` `json_object` / `json_schema` is enforced by guided decoding, as chat's `response_format`
(the core checks and compiles the schema, named `text.format.schema`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.request import OutputConstraint, ReasoningOptions, ToolChoice, ToolSpec
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.protocols.openai_shared import EMPTY_PARAMETERS, SCHEMA_NAME, TOOL_NAME
from gateway.protocols.responses.request import ReasoningConfig, TextConfig

LOGPROBS = "message.output_text.logprobs"
ENCRYPTED_REASONING = "reasoning.encrypted_content"
# What `include` may ask for; the rest add the results of tools or inputs this gateway refuses, so there is never
# anything to add.
INCLUDABLE = frozenset(
    {
        LOGPROBS,
        ENCRYPTED_REASONING,
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
    }
)


@dataclass(frozen=True, slots=True)
class Includes:
    """What `include` asks to add to the output."""

    logprobs: bool = False
    encrypted_reasoning: bool = False


def parse_tools(tools: Any) -> tuple[ToolSpec, ...]:
    """`tools` (None or a list of function tools) as ToolSpecs."""
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise InvalidRequestError("'tools' must be a list of tools", param="tools")
    return tuple(_tool(tool, f"tools[{index}]") for index, tool in enumerate(tools))


def _tool(tool: Any, where: str) -> ToolSpec:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind != "function":
        if isinstance(kind, str):
            raise UnsupportedFeatureError(
                f"Tools of type '{kind[:64]}' are not supported: this gateway serves function tools only",
                param=f"{where}.type",
            )
        raise InvalidRequestError("Each tool must be an object with a 'type'", param=f"{where}.type")
    name = tool.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise InvalidRequestError(
            "The function name must be 1 to 64 letters, digits, '_', '-' or '.'", param=f"{where}.name"
        )
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequestError("'description' must be a string", param=f"{where}.description")
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise InvalidRequestError("'strict' must be a boolean", param=f"{where}.strict")
    parameters = tool.get("parameters")
    if parameters is None:
        parameters = EMPTY_PARAMETERS
    elif not isinstance(parameters, dict):
        raise InvalidRequestError("'parameters' must be a JSON schema object", param=f"{where}.parameters")
    return ToolSpec(name, parameters, description, bool(strict), param=where, parameters_param=f"{where}.parameters")


def parse_tool_choice(tool_choice: Any, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    """`tool_choice` checked against the tools (default `auto`; `auto` without tools is `none`)."""
    if tool_choice is None or (tool_choice == "auto" and not tools):
        return ToolChoice("auto" if tools else "none")
    if tool_choice in ("none", "auto", "required"):
        if tool_choice == "required" and not tools:
            raise InvalidRequestError("tool_choice 'required' needs 'tools'", param="tool_choice")
        return ToolChoice(tool_choice)
    kind = tool_choice.get("type") if isinstance(tool_choice, dict) else None
    names = {tool.name for tool in tools}
    if kind == "function":
        name = tool_choice.get("name")
        if not isinstance(name, str) or name not in names:
            raise InvalidRequestError(
                f"tool_choice names {name!r}, which is not among 'tools'", param="tool_choice.name"
            )
        return ToolChoice("function", name)
    if kind == "allowed_tools":
        return _allowed_tools(tool_choice, names)
    if isinstance(kind, str):
        raise UnsupportedFeatureError(
            f"tool_choice of type '{kind[:64]}' is not supported: this gateway serves function tools only",
            param="tool_choice.type",
        )
    raise InvalidRequestError(
        "tool_choice must be 'none', 'auto', 'required', {'type': 'function', 'name': ...} or "
        "{'type': 'allowed_tools', 'mode': ..., 'tools': [...]}",
        param="tool_choice",
    )


def _allowed_tools(tool_choice: dict[str, Any], names: set[str]) -> ToolChoice:
    mode = tool_choice.get("mode", "auto")
    if mode not in ("auto", "required"):
        raise InvalidRequestError("tool_choice.mode must be 'auto' or 'required'", param="tool_choice.mode")
    listed = tool_choice.get("tools")
    if not isinstance(listed, list) or not listed:
        raise InvalidRequestError("tool_choice.tools must list the allowed tools", param="tool_choice.tools")
    allowed = set()
    for index, tool in enumerate(listed):
        name = tool.get("name") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(name, str) or name not in names:
            raise InvalidRequestError(
                "Each allowed tool must be {'type': 'function', 'name': ...} naming one of 'tools'",
                param=f"tool_choice.tools[{index}]",
            )
        allowed.add(name)
    return ToolChoice(mode, allowed=frozenset(allowed))


def output_constraint(text: TextConfig | None) -> OutputConstraint | None:
    """The constraint `text.format` asks for, or None for plain text."""
    fmt = text.format if text is not None else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return OutputConstraint("json_object", field="text.format")
    if kind != "json_schema":
        raise InvalidRequestError(
            "text.format.type must be 'text', 'json_object' or 'json_schema'", param="text.format.type"
        )
    name = fmt.get("name")
    if not isinstance(name, str) or not SCHEMA_NAME.fullmatch(name):
        raise InvalidRequestError(
            "text.format.name must be 1 to 64 letters, digits, '_' or '-'", param="text.format.name"
        )
    if fmt.get("strict") is not None and not isinstance(fmt["strict"], bool):
        raise InvalidRequestError("text.format.strict must be a boolean", param="text.format.strict")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequestError("text.format.schema must be a JSON schema object", param="text.format.schema")
    return OutputConstraint("json_schema", schema, "text.format.schema", "text.format")


def reasoning_options(reasoning: ReasoningConfig | None) -> ReasoningOptions | None:
    """The effort for templates that take it; `none` also turns thinking off in templates with a switch."""
    if reasoning is None or reasoning.effort is None:
        return None
    return ReasoningOptions(effort=reasoning.effort, enabled=False if reasoning.effort == "none" else None)


def parse_include(include: list[str] | None) -> Includes:
    """`include`, each value one the API knows (a 400 naming `include[i]` otherwise)."""
    values = include or []
    for index, value in enumerate(values):
        if value not in INCLUDABLE:
            raise InvalidRequestError(
                f"include[{index}] must be one of: {', '.join(sorted(INCLUDABLE))}", param=f"include[{index}]"
            )
    return Includes(LOGPROBS in values, ENCRYPTED_REASONING in values)
