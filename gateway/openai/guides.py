"""Guided decoding: what a chat request asks for, as a TensorRT-LLM guide (`guide_type`, `guide`).

TensorRT-LLM's guide types are `json` (any JSON object; no guide text), `json_schema`, `regex` and `ebnf_grammar`
(no `structural_tag`). The request may ask through:
- `response_format`: `text`, `json_object`, `json_schema` (`strict` or not: the engine enforces it either way);
- vLLM's `structured_outputs`: one of `json`, `regex`, `choice`, `grammar`, `json_object`;
- vLLM's older top-level `guided_json`, `guided_regex`, `guided_choice`, `guided_grammar`;
- a forced tool call (`tool_choice` `required` or a named function): a JSON schema for a list of calls
  `[{"name": ..., "arguments": {...}}]`, which `parsers.ForcedCallsParser` turns into tool calls.

A `choice` becomes an EBNF alternation of string literals (no regex escaping dialect to get wrong). Planning is
cheap and runs on the event loop: every guide is bounded (openai/schema_bounds.py: size, depth, `$ref`s, enum
values, properties) and must be valid Unicode. What is expensive is left to a `GuideCheck` on the guide (and on
each tool, openai/tools.py) for `GuideChecker.run`, which checks schemas against their JSON Schema meta-schema,
regexes with Python's `re`, and all guides with xgrammar (the engine's guided-decoding backend) when it is
installed, in a worker process with a time limit, so a guide the engine would refuse is a 400 here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.openai.compact_json import ANY_OBJECT_SCHEMA
from gateway.openai.guide_checker import UNCHECKED, GuideCheck, GuideChecker, default_guide_checker
from gateway.openai.schema_bounds import (
    check_choices,
    check_guide_text,
    compact_json,
    encodable,
    measure_schema,
    schema_size_problem,
)

if TYPE_CHECKING:
    from gateway.openai.tools import ToolChoice, ToolSpec

_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_LEGACY = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
_STRUCTURED = ("json", "regex", "choice", "grammar", "json_object")


@dataclass(frozen=True, slots=True)
class Guide:
    """A TensorRT-LLM guided-decoding request: `guided_decoding_guide_type` and `guided_decoding_guide`."""

    type: str  # "json", "json_schema", "regex", "ebnf_grammar"
    guide: str | None  # None for "json"
    check: GuideCheck | None = field(default=None, compare=False, repr=False)  # what is left to check


@dataclass(frozen=True, slots=True)
class GuidePlan:
    """The guide for a request, whether it forces tool calls, and a field left unenforced (for a log line)."""

    guide: Guide | None
    forced_tool_calls: bool = False
    unenforced: str | None = None
    checks: tuple[GuideCheck, ...] = ()  # every guide given, applied or not, for GuideChecker.run


JSON_OBJECT = Guide("json", None)


def plan_guide(
    *,
    tools: Sequence[ToolSpec] = (),
    tool_choice: ToolChoice | None = None,
    parallel_tool_calls: bool = True,
    response_format: Any = None,
    structured_outputs: Any = None,
    checker: GuideChecker | None = None,
    **legacy: Any,
) -> GuidePlan:
    """The one guide a request gets; `legacy` takes the `guided_*` fields. Two content guides at once are a 400.

    A forced tool call wins over a content guide (OpenAI's `response_format` applies to content, and there is
    none). With tools the model may call (`auto`), a content guide would stop it from calling any: the content
    guide is then not applied and `unenforced` names it. Only bounds are checked here (`checker`'s limits);
    `checks` is what GuideChecker.run still has to do.
    """
    unknown = set(legacy) - set(_LEGACY)
    if unknown:
        raise TypeError(f"unknown guide fields: {sorted(unknown)}")
    checker = checker or default_guide_checker()
    sources = [
        (name, guide)
        for name, guide in (
            ("response_format", response_format_guide(response_format, checker)),
            ("structured_outputs", structured_outputs_guide(structured_outputs, checker)),
            *((name, legacy_guide(name, legacy.get(name), checker)) for name in _LEGACY),
        )
        if guide is not None
    ]
    if len(sources) > 1:
        raise InvalidRequestError(
            f"Only one of response_format, structured_outputs and guided_* can be given (got {sources[0][0]} and "
            f"{sources[1][0]})",
            param=sources[1][0],
        )
    checks = tuple(guide.check for _, guide in sources if guide.check is not None)
    if tool_choice is not None and tool_choice.forced:
        forced = tool_choice_guide(tools, tool_choice, parallel_tool_calls, checker)
        return GuidePlan(forced, forced_tool_calls=True, checks=checks + ((forced.check,) if forced.check else ()))
    if not sources:
        return GuidePlan(None)
    if tools and tool_choice is not None and tool_choice.mode == "auto":
        return GuidePlan(None, unenforced=sources[0][0], checks=checks)
    return GuidePlan(sources[0][1], checks=checks)


async def without_free_whitespace(guide: Guide | None, checker: GuideChecker) -> Guide | None:
    """A `json` / `json_schema` guide as the EBNF of compact JSON (built in the checker's worker process:
    openai/compact_json.py); other guides, and a JSON guide whose compact grammar cannot be built, unchanged."""
    if guide is None or guide.type not in ("json", "json_schema"):
        return guide
    grammar = await checker.compact_json_grammar(guide.guide or ANY_OBJECT_SCHEMA)
    return Guide("ebnf_grammar", grammar) if grammar is not None else guide


def response_format_guide(response_format: Any, checker: GuideChecker | None = None) -> Guide | None:
    """OpenAI's `response_format`."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT
    if kind != "json_schema":
        raise InvalidRequestError(
            "response_format.type must be 'text', 'json_object' or 'json_schema'", param="response_format.type"
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequestError("response_format.json_schema must be an object", param="response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
        raise InvalidRequestError(
            "response_format.json_schema.name must be 1 to 64 letters, digits, '_' or '-'",
            param="response_format.json_schema.name",
        )
    if spec.get("strict") is not None and not isinstance(spec["strict"], bool):
        raise InvalidRequestError(
            "response_format.json_schema.strict must be a boolean", param="response_format.json_schema.strict"
        )
    schema = spec.get("schema")
    if schema is None:
        return JSON_OBJECT
    return schema_guide(schema, "response_format.json_schema.schema", checker)


def structured_outputs_guide(structured_outputs: Any, checker: GuideChecker | None = None) -> Guide | None:
    """vLLM's `structured_outputs` (exactly one of `json`, `regex`, `choice`, `grammar`, `json_object`)."""
    if structured_outputs is None:
        return None
    if not isinstance(structured_outputs, dict):
        raise InvalidRequestError("structured_outputs must be an object", param="structured_outputs")
    for key, value in structured_outputs.items():
        if key not in _STRUCTURED and key != "disable_fallback" and value not in (None, False):
            shown = key if encodable(key) and len(key) <= 64 else repr(key[:64])
            raise UnsupportedFeatureError(
                f"structured_outputs.{shown} is not supported (TensorRT-LLM takes json, regex, choice and grammar)",
                param=f"structured_outputs.{shown}",
            )
    given = [key for key in _STRUCTURED if structured_outputs.get(key) not in (None, False)]
    if len(given) != 1:
        raise InvalidRequestError(
            f"structured_outputs needs exactly one of {', '.join(_STRUCTURED)} (got {len(given)})",
            param="structured_outputs",
        )
    key = given[0]
    where = f"structured_outputs.{key}"
    value = structured_outputs[key]
    if key == "json_object":
        if value is not True:
            raise InvalidRequestError("structured_outputs.json_object must be true", param=where)
        return JSON_OBJECT
    return _typed_guide(key, value, where, checker or default_guide_checker())


def legacy_guide(field: str, value: Any, checker: GuideChecker | None = None) -> Guide | None:
    """One of vLLM's older top-level `guided_json`, `guided_regex`, `guided_choice`, `guided_grammar`."""
    if value is None:
        return None
    return _typed_guide(field.removeprefix("guided_"), value, field, checker or default_guide_checker())


def _typed_guide(kind: str, value: Any, where: str, checker: GuideChecker) -> Guide:
    if kind == "json":
        if isinstance(value, str):
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
    tools: Sequence[ToolSpec], tool_choice: ToolChoice, parallel_tool_calls: bool, checker: GuideChecker | None = None
) -> Guide:
    """The JSON schema of a forced call: a list of `{"name": const, "arguments": <the tool's schema>}`.

    One call for a named function, or for `required` without parallel calls; one or more otherwise. Each tool's
    schema sits in `$defs` and its local `$ref`s are rewritten to point there, so schemas with `$defs` work.
    Each tool's schema is within the bounds already; the engine compiles their enum values together, so the
    total is bounded too.
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
    text = compact_json(schema, "tools")
    check = GuideCheck("compiled_schema", text, "tools")
    if checker.cached(check.kind, text) is UNCHECKED:
        alternatives, limit = measure_schema(schema).enum_values, checker.limits.max_enum_values
        if alternatives > limit:
            raise InvalidRequestError(
                f"The forced call's guide holds {alternatives} enum values and anyOf/oneOf branches of the tools "
                f"together; this gateway takes at most {limit} (--max-guide-enum-values)",
                param="tools",
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
