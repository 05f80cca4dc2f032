"""Guided decoding: an output constraint or a forced tool call as a TensorRT-LLM guide (`guide_type`, `guide`).

TensorRT-LLM's guide types are `json` (any JSON object; no guide text), `json_schema`, `regex` and `ebnf_grammar`
(no `structural_tag`). A guide comes from:
- an output constraint (core/request.py's `OutputConstraint`: json_object, json_schema, regex, choice, grammar),
  which each protocol reads from its own fields (chat: `response_format`, `structured_outputs`, `guided_*`);
- a forced tool call (tool choice `required` or a named function): a JSON schema for a list of calls
  `[{"name": ..., "arguments": {...}}]`, which `parsers.ForcedCallsParser` turns into tool calls.

A `choice` becomes an EBNF alternation of string literals (no regex escaping dialect to get wrong). Building a
guide is cheap and runs on the event loop: every guide is bounded (core/schema_bounds.py: size, depth, `$ref`s,
enum values, properties) and must be valid Unicode. What is expensive is left to a `GuideCheck` on the guide (and
on each tool, core/tools.py) for `GuideChecker.run`, which checks schemas against their JSON Schema meta-schema,
regexes with Python's `re`, and all guides with xgrammar (the engine's guided-decoding backend) when it is
installed, in a worker process with a time limit, so a guide the engine would refuse is a 400 here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.core.compact_json import ANY_OBJECT_SCHEMA
from gateway.core.guide_checker import UNCHECKED, GuideCheck, GuideChecker, default_guide_checker
from gateway.core.schema_bounds import (
    check_choices,
    check_guide_text,
    compact_json,
    measure_schema,
    schema_size_problem,
)
from gateway.errors import InvalidRequestError

if TYPE_CHECKING:
    from gateway.core.request import OutputConstraint, ToolChoice, ToolSpec


@dataclass(frozen=True, slots=True)
class Guide:
    """A TensorRT-LLM guided-decoding request: `guided_decoding_guide_type` and `guided_decoding_guide`."""

    type: str  # "json", "json_schema", "regex", "ebnf_grammar"
    guide: str | None  # None for "json"
    check: GuideCheck | None = field(default=None, compare=False, repr=False)  # what is left to check


JSON_OBJECT = Guide("json", None)


async def without_free_whitespace(guide: Guide, checker: GuideChecker) -> Guide:
    """A `json` / `json_schema` guide as the EBNF of compact JSON (built in the checker's worker process:
    core/compact_json.py); other guides, and a JSON guide whose compact grammar cannot be built, unchanged."""
    if guide.type not in ("json", "json_schema"):
        return guide
    grammar = await checker.compact_json_grammar(guide.guide or ANY_OBJECT_SCHEMA)
    return Guide("ebnf_grammar", grammar) if grammar is not None else guide


def constraint_guide(constraint: OutputConstraint, checker: GuideChecker | None = None) -> Guide:
    """The guide that enforces an output constraint, within the checker's bounds (its check still to run)."""
    checker = checker or default_guide_checker()
    kind, value, where = constraint.kind, constraint.value, constraint.param
    if kind == "json_object":
        return JSON_OBJECT
    if kind == "json_schema":
        if isinstance(value, str):  # a schema sent as JSON text (vLLM's guided_json): bounded before it is parsed
            check_guide_text(value, "The JSON schema", where, checker.limits)
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                raise InvalidRequestError("The JSON schema is not valid JSON", param=where) from None
        return schema_guide(value, where, checker)
    if kind == "regex":
        return regex_guide(value, where, checker)
    if kind == "choice":
        return choice_guide(value, where, checker)
    return grammar_guide(value, where, checker)


def schema_guide(schema: Any, where: str, checker: GuideChecker | None = None) -> Guide:
    """A `json_schema` guide within the bounds; its check is left to GuideChecker.run."""
    text = check_json_schema(schema, where, checker)
    return Guide("json_schema", text, GuideCheck("json_schema", text, where))


def regex_guide(pattern: Any, where: str, checker: GuideChecker | None = None) -> Guide:
    """A `regex` guide within the bounds; that it compiles is left to GuideChecker.run."""
    if not isinstance(pattern, str) or not pattern:
        raise InvalidRequestError("The regex must be a non-empty string", param=where)
    check_guide_text(pattern, "The regex", where, (checker or default_guide_checker()).limits)
    return Guide("regex", pattern, GuideCheck("regex", pattern, where))


def choice_guide(choices: Any, where: str, checker: GuideChecker | None = None) -> Guide:
    """An `ebnf_grammar` guide whose output is exactly one of `choices`."""
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
        raise InvalidRequestError("The choices must be a non-empty list of non-empty strings", param=where)
    check_choices(choices, where, (checker or default_guide_checker()).limits)
    grammar = "root ::= " + " | ".join(ebnf_literal(choice) for choice in dict.fromkeys(choices))
    return Guide("ebnf_grammar", grammar)


def grammar_guide(grammar: Any, where: str, checker: GuideChecker | None = None) -> Guide:
    """An `ebnf_grammar` guide (GBNF-style EBNF with a `root` rule, as xgrammar reads it) within the bounds."""
    if not isinstance(grammar, str) or not grammar.strip():
        raise InvalidRequestError("The grammar must be a non-empty string", param=where)
    check_guide_text(grammar, "The grammar", where, (checker or default_guide_checker()).limits)
    return Guide("ebnf_grammar", grammar, GuideCheck("grammar", grammar, where))


def ebnf_literal(text: str) -> str:
    """`text` as an EBNF string literal: quotes, backslashes and control characters escaped."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")  # fixed width: a hex digit after it stays a character
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def tool_choice_guide(
    tools: Sequence[ToolSpec],
    tool_choice: ToolChoice,
    parallel_tool_calls: bool,
    checker: GuideChecker | None = None,
    param: str = "tools",
) -> Guide:
    """The JSON schema of a forced call: a list of `{"name": const, "arguments": <the tool's schema>}`.

    One call for a named function, or for `required` without parallel calls; one or more otherwise. Each tool's
    schema sits in `$defs` and its local `$ref`s are rewritten to point there, so schemas with `$defs` work.
    Each tool's schema is within the bounds already; the engine compiles their enum values together, so the
    total is bounded too. `param` is the field that holds the tools (errors name it).
    """
    checker = checker or default_guide_checker()
    chosen = [tool for tool in tools if tool_choice.mode == "required" or tool.name == tool_choice.name]
    defs = {f"tool{i}": _rebase(tool.parameters, f"#/$defs/tool{i}") for i, tool in enumerate(chosen)}
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": {"$ref": f"#/$defs/tool{i}"}},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for i, tool in enumerate(chosen)
    ]
    single = tool_choice.mode == "function" or not parallel_tool_calls
    schema: dict[str, Any] = {
        "type": "array",
        "items": calls[0] if len(calls) == 1 else {"anyOf": calls},
        "minItems": 1,
        **({"maxItems": 1} if single else {}),
        "$defs": defs,
    }
    text = compact_json(schema, param)
    check = GuideCheck("compiled_schema", text, param)
    if checker.cached(check.kind, text) is UNCHECKED:
        alternatives, limit = measure_schema(schema).enum_values, checker.limits.max_enum_values
        if alternatives > limit:
            raise InvalidRequestError(
                f"The forced call's guide holds {alternatives} enum values and anyOf/oneOf branches of the tools "
                f"together; this gateway takes at most {limit} (--max-guide-enum-values)",
                param=param,
            )
    return Guide("json_schema", text, check)


def _rebase(schema: Any, base: str) -> Any:
    """`schema` with every local `$ref` ("#..." ) made relative to `base` instead of the document root."""
    if isinstance(schema, dict):
        return {
            key: base + value[1:]
            if key == "$ref" and isinstance(value, str) and value.startswith("#")
            else _rebase(value, base)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_rebase(item, base) for item in schema]
    return schema


def check_json_schema(schema: Any, where: str, checker: GuideChecker | None = None) -> str:
    """A JSON schema (an object) within the checker's bounds and valid Unicode, as the compact JSON text a guide
    carries; `GuideCheck("json_schema", text, where)` is the rest (meta-schema, xgrammar) for GuideChecker.run.

    A text already checked is not measured again: its verdict is cached (agents send the same tools and
    response formats with every request)."""
    if not isinstance(schema, dict):
        raise InvalidRequestError("The JSON schema must be an object", param=where)
    checker = checker or default_guide_checker()
    text = compact_json(schema, where)
    problem = checker.cached("json_schema", text)
    if problem is UNCHECKED:
        problem = schema_size_problem(text, schema, checker.limits)
        if problem is not None:
            checker.remember("json_schema", text, problem)
    if problem is not None:
        raise InvalidRequestError(problem, param=where)
    return text
