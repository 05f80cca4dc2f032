"""The `response` object's fields that echo the request, as OpenAI echoes them, and its usage and error objects.

The head is built once per request (`response_head`); every snapshot of the response (`response.created`, the
final object, what a store keeps) is the head with its status, output, usage and error filled in, keys in the
order the API writes them. `usage` (until the end) and `user` (when not given) are left out rather than null:
OpenAI's published schema types them without null, and strict clients generated from it refuse a null.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.core.request import ToolSpec
from gateway.core.usage import Usage
from gateway.errors import GatewayError, OverloadedError
from gateway.protocols.responses.request import ResponsesRequest


def response_head(body: ResponsesRequest, response_id: str, model: str, tools: tuple[ToolSpec, ...]) -> dict[str, Any]:
    """Every field of the `response` object, those that do not change as it runs set from the request."""
    reasoning = body.reasoning
    head = {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": bool(body.background),
        "conversation": {"id": body.conversation} if isinstance(body.conversation, str) else body.conversation,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "model": model,
        "output": [],
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "prompt_cache_key": body.prompt_cache_key,
        "reasoning": {
            "effort": reasoning.effort if reasoning else None,
            "summary": (reasoning.summary or reasoning.generate_summary) if reasoning else None,
        },
        "safety_identifier": body.safety_identifier,
        "service_tier": "default",  # the only tier there is: what served the request, whichever was asked
        "store": body.store is not False,
        "temperature": body.temperature if body.temperature is not None else 1.0,
        "text": text_echo(body),
        "tool_choice": tool_choice_echo(body.tool_choice),
        "tools": [tool_echo(spec, raw) for spec, raw in zip(tools, body.tools or (), strict=True)],
        "top_logprobs": body.top_logprobs or 0,
        "top_p": body.top_p if body.top_p is not None else 1.0,
        "truncation": body.truncation or "disabled",
        "metadata": body.metadata or {},
    }
    # The schema has no null for these two (api.openai.com writes null): left out until they have a value.
    if body.user is not None:
        head["user"] = body.user
    return head


def text_echo(body: ResponsesRequest) -> dict[str, Any]:
    """`text`: the format as given (json_schema's `strict` defaulted), the verbosity."""
    text = body.text
    given = text.format if text is not None and isinstance(text.format, dict) else {"type": "text"}
    fmt = {"type": given["type"]}
    if given["type"] == "json_schema":
        fmt |= {key: given[key] for key in ("name", "description", "schema") if key in given}
        fmt["strict"] = given.get("strict") or False
    return {"format": fmt, "verbosity": (text.verbosity if text is not None else None) or "medium"}


def tool_choice_echo(tool_choice: Any) -> Any:
    """`tool_choice` as checked (options.py): a mode, or the object's known fields."""
    if not isinstance(tool_choice, dict):
        return tool_choice if tool_choice is not None else "auto"
    if tool_choice["type"] == "function":
        return {"type": "function", "name": tool_choice["name"]}
    listed = [{"type": "function", "name": tool["name"]} for tool in tool_choice["tools"]]
    return {"type": "allowed_tools", "mode": tool_choice.get("mode", "auto"), "tools": listed}


def tool_echo(spec: ToolSpec, raw: dict[str, Any]) -> dict[str, Any]:
    """A function tool as the response lists it."""
    return {
        "type": "function",
        "name": spec.name,
        "description": spec.description,
        "parameters": raw.get("parameters"),
        "strict": raw.get("strict"),
    }


def usage_json(usage: Usage, reasoning_tokens: int) -> dict[str, Any]:
    """ResponseUsage (nothing is written to a prompt cache on request: `cache_write_tokens` is 0)."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens or 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def error_object(error: GatewayError) -> dict[str, str]:
    """A failed response's `error`, its code one of the API's (`ResponseErrorCode`)."""
    if isinstance(error, OverloadedError):
        code = "rate_limit_exceeded"
    elif 400 <= error.status < 500:
        code = "invalid_prompt"
    else:
        code = "server_error"
    return {"code": code, "message": error.message}
