"""Messages' `tools` and `tool_choice`, read into the core's ToolSpec and ToolChoice.

Custom tools (`name`, `description`, `input_schema`; `type` absent or `custom`) are served; a server tool
(`web_search_20250305`, `bash_20250124`, `text_editor_...`, `code_execution_...`, ...) runs on Anthropic's side,
which this gateway is not, so it is a 400 naming its type. `defer_loading` (Claude Code's tool search) changes
nothing: every tool is in the prompt. `tool_choice`: `auto`, `any` (a call is forced, with a guide, as chat's
`required`), `tool` (that one), `none`; `disable_parallel_tool_use` allows one call at most.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from gateway.core.request import ToolChoice, ToolOptions, ToolSpec
from gateway.errors import InvalidRequestError, UnsupportedFeatureError

_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_CHOICES: dict[str, Literal["none", "auto", "required", "function"]] = {
    "auto": "auto",
    "any": "required",
    "tool": "function",
    "none": "none",
}


def tool_options(tools: Any, tool_choice: Any) -> ToolOptions:
    """The request's tools and how the model may call them."""
    specs = parse_tools(tools)
    choice, parallel = parse_tool_choice(tool_choice, specs)
    return ToolOptions(specs, choice, parallel, choice_param="tool_choice", param="tools")


def parse_tools(tools: Any) -> tuple[ToolSpec, ...]:
    """`tools` (None or a list of custom tools) as ToolSpecs."""
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise InvalidRequestError("'tools' must be a list of tools", param="tools")
    return tuple(_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools))


def _tool(tool: Any, where: str) -> ToolSpec:
    if not isinstance(tool, dict):
        raise InvalidRequestError("Each tool must be an object", param=where)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        shown = kind if isinstance(kind, str) and len(kind) <= 64 else repr(kind)[:64]
        raise UnsupportedFeatureError(
            f"Server tool '{shown}' is not supported: this gateway serves custom tools (name, input_schema), "
            "which the client runs",
            param=f"{where}.type",
        )
    name = tool.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequestError("A tool's name must be 1 to 128 letters, digits, '_' or '-'", param=f"{where}.name")
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequestError("'description' must be a string", param=f"{where}.description")
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise InvalidRequestError("'input_schema' must be a JSON schema object", param=f"{where}.input_schema")
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise InvalidRequestError("'strict' must be a boolean", param=f"{where}.strict")
    return ToolSpec(
        name=name,
        parameters=schema,
        description=description,
        strict=bool(strict),
        param=where,
        parameters_param=f"{where}.input_schema",
    )


def parse_tool_choice(tool_choice: Any, tools: Sequence[ToolSpec]) -> tuple[ToolChoice, bool]:
    """`tool_choice` checked against the tools (default: `auto` with tools, `none` without), and whether several
    calls may come at once."""
    if tool_choice is None:
        return ToolChoice("auto" if tools else "none"), True
    kind = tool_choice.get("type") if isinstance(tool_choice, dict) else None
    if kind not in _CHOICES:
        raise InvalidRequestError("tool_choice.type must be 'auto', 'any', 'tool' or 'none'", param="tool_choice.type")
    parallel = tool_choice.get("disable_parallel_tool_use", False)
    if not isinstance(parallel, bool):
        raise InvalidRequestError(
            "'disable_parallel_tool_use' must be a boolean", param="tool_choice.disable_parallel_tool_use"
        )
    if kind == "auto" and not tools:
        return ToolChoice("none"), not parallel  # a default that clients send without tools
    if kind in ("any", "tool") and not tools:
        raise InvalidRequestError(f"tool_choice '{kind}' needs 'tools'", param="tool_choice")
    name = None
    if kind == "tool":
        name = tool_choice.get("name")
        if not isinstance(name, str) or name not in (tool.name for tool in tools):
            raise InvalidRequestError("tool_choice.name must name one of 'tools'", param="tool_choice.name")
    return ToolChoice(_CHOICES[kind], name), not parallel
