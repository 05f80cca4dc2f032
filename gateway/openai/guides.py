"""Guided decoding: what a chat request asks for, as a TensorRT-LLM guide (`guide_type`, `guide`).

TensorRT-LLM's guide types are `json` (any JSON object; no guide text), `json_schema`, `regex` and `ebnf_grammar`
(no `structural_tag`). The request may ask through:
- `response_format`: `text`, `json_object`, `json_schema` (`strict` or not: the engine enforces it either way);
- vLLM's `structured_outputs`: one of `json`, `regex`, `choice`, `grammar`, `json_object`;
- vLLM's older top-level `guided_json`, `guided_regex`, `guided_choice`, `guided_grammar`;
- a forced tool call (`tool_choice` `required` or a named function): a JSON schema for a list of calls
  `[{"name": ..., "arguments": {...}}]`, which `parsers.ForcedCallsParser` turns into tool calls.

A `choice` becomes an EBNF alternation of string literals (no regex escaping dialect to get wrong). Schemas are
checked against their JSON Schema meta-schema, regexes with Python's `re`, and all guides with xgrammar (the
engine's guided-decoding backend) when it is installed, so a guide the engine would refuse is a 400 here.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import jsonschema

from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.openai.compact_json import ANY_OBJECT_SCHEMA, cached_compact_json_grammar, compact_json_grammar

if TYPE_CHECKING:
    from gateway.openai.tools import ToolChoice, ToolSpec

_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_XGRAMMAR_PREFIX = re.compile(r"^\[[^\]]*\]\s*\S+:\d+:\s*")  # "[17:42:07] /project/cpp/x.cc:94: "
_LEGACY = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
_STRUCTURED = ("json", "regex", "choice", "grammar", "json_object")


@dataclass(frozen=True, slots=True)
class Guide:
    """A TensorRT-LLM guided-decoding request: `guided_decoding_guide_type` and `guided_decoding_guide`."""

    type: str  # "json", "json_schema", "regex", "ebnf_grammar"
    guide: str | None  # None for "json"


@dataclass(frozen=True, slots=True)
class GuidePlan:
    """The guide for a request, whether it forces tool calls, and a field left unenforced (for a log line)."""

    guide: Guide | None
    forced_tool_calls: bool = False
    unenforced: str | None = None


JSON_OBJECT = Guide("json", None)


def plan_guide(
    *,
    tools: Sequence[ToolSpec] = (),
    tool_choice: ToolChoice | None = None,
    parallel_tool_calls: bool = True,
    response_format: Any = None,
    structured_outputs: Any = None,
    compact_json: bool = False,
    **legacy: Any,
) -> GuidePlan:
    """The one guide a request gets; `legacy` takes the `guided_*` fields. Two content guides at once are a 400.

    A forced tool call wins over a content guide (OpenAI's `response_format` applies to content, and there is
    none). With tools the model may call (`auto`), a content guide would stop it from calling any: the content
    guide is then not applied and `unenforced` names it. `compact_json`: JSON guides without free whitespace.
    """
    unknown = set(legacy) - set(_LEGACY)
    if unknown:
        raise TypeError(f"unknown guide fields: {sorted(unknown)}")
    sources = [
        (name, guide)
        for name, guide in (
            ("response_format", response_format_guide(response_format)),
            ("structured_outputs", structured_outputs_guide(structured_outputs)),
            *((name, legacy_guide(name, legacy.get(name))) for name in _LEGACY),
        )
        if guide is not None
    ]
    if len(sources) > 1:
        raise InvalidRequestError(
            f"Only one of response_format, structured_outputs and guided_* can be given (got {sources[0][0]} and "
            f"{sources[1][0]})",
            param=sources[1][0],
        )
    if tool_choice is not None and tool_choice.forced:
        forced = tool_choice_guide(tools, tool_choice, parallel_tool_calls)
        return GuidePlan(without_free_whitespace(forced) if compact_json else forced, forced_tool_calls=True)
    if not sources:
        return GuidePlan(None)
    if tools and tool_choice is not None and tool_choice.mode == "auto":
        return GuidePlan(None, unenforced=sources[0][0])
    return GuidePlan(without_free_whitespace(sources[0][1]) if compact_json else sources[0][1])


def without_free_whitespace(guide: Guide) -> Guide:
    """A `json` / `json_schema` guide as the EBNF of compact JSON (compact_json.py); other guides, and every guide
    when xgrammar is not installed, unchanged."""
    module = xgrammar()
    if module is None or guide.type not in ("json", "json_schema"):
        return guide
    schema = guide.guide or ANY_OBJECT_SCHEMA
    build = cached_compact_json_grammar if len(schema) <= CACHED_SCHEMA_CHARS else compact_json_grammar
    grammar = build(schema, module)
    return Guide("ebnf_grammar", grammar) if grammar is not None else guide


def response_format_guide(response_format: Any) -> Guide | None:
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
    return schema_guide(schema, "response_format.json_schema.schema")


def structured_outputs_guide(structured_outputs: Any) -> Guide | None:
    """vLLM's `structured_outputs` (exactly one of `json`, `regex`, `choice`, `grammar`, `json_object`)."""
    if structured_outputs is None:
        return None
    if not isinstance(structured_outputs, dict):
        raise InvalidRequestError("structured_outputs must be an object", param="structured_outputs")
    for key, value in structured_outputs.items():
        if key not in _STRUCTURED and key != "disable_fallback" and value not in (None, False):
            raise UnsupportedFeatureError(
                f"structured_outputs.{key} is not supported (TensorRT-LLM takes json, regex, choice and grammar)",
                param=f"structured_outputs.{key}",
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
    return _typed_guide(key, value, where)


def legacy_guide(field: str, value: Any) -> Guide | None:
    """One of vLLM's older top-level `guided_json`, `guided_regex`, `guided_choice`, `guided_grammar`."""
    if value is None:
        return None
    return _typed_guide(field.removeprefix("guided_"), value, field)


def _typed_guide(kind: str, value: Any, where: str) -> Guide:
    if kind == "json":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise InvalidRequestError("The JSON schema is not valid JSON", param=where) from None
        return schema_guide(value, where)
    if kind == "regex":
        return regex_guide(value, where)
    if kind == "choice":
        return choice_guide(value, where)
    return grammar_guide(value, where)


def schema_guide(schema: Any, where: str) -> Guide:
    """A `json_schema` guide, after the schema is checked."""
    return Guide("json_schema", check_json_schema(schema, where))


def regex_guide(pattern: Any, where: str) -> Guide:
    """A `regex` guide, after the pattern compiles."""
    if not isinstance(pattern, str) or not pattern:
        raise InvalidRequestError("The regex must be a non-empty string", param=where)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidRequestError(f"The regex does not compile: {exc}", param=where) from None
    _xgrammar_check("from_regex", pattern, where)
    return Guide("regex", pattern)


def choice_guide(choices: Any, where: str) -> Guide:
    """An `ebnf_grammar` guide whose output is exactly one of `choices`."""
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
        raise InvalidRequestError("The choices must be a non-empty list of non-empty strings", param=where)
    grammar = "root ::= " + " | ".join(ebnf_literal(choice) for choice in dict.fromkeys(choices))
    return Guide("ebnf_grammar", grammar)


def grammar_guide(grammar: Any, where: str) -> Guide:
    """An `ebnf_grammar` guide (GBNF-style EBNF with a `root` rule, as xgrammar reads it)."""
    if not isinstance(grammar, str) or not grammar.strip():
        raise InvalidRequestError("The grammar must be a non-empty string", param=where)
    _xgrammar_check("from_ebnf", grammar, where)
    return Guide("ebnf_grammar", grammar)


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


def tool_choice_guide(tools: Sequence[ToolSpec], tool_choice: ToolChoice, parallel_tool_calls: bool) -> Guide:
    """The JSON schema of a forced call: a list of `{"name": const, "arguments": <the tool's schema>}`.

    One call for a named function, or for `required` without parallel calls; one or more otherwise. Each tool's
    schema sits in `$defs` and its local `$ref`s are rewritten to point there, so schemas with `$defs` work.
    """
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
    text = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    _xgrammar_check("from_json_schema", text, "tools")
    return Guide("json_schema", text)


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


CACHED_SCHEMA_CHARS = 64 * 1024


def check_json_schema(schema: Any, where: str) -> str:
    """A JSON schema the engine can enforce (an object, valid against its meta-schema, compiled by xgrammar), as
    the compact JSON text a guide carries.

    The verdict is cached by that text: the meta-schema check takes about 0.8 ms, and agents send the same tools
    and response formats with every request. Schemas over CACHED_SCHEMA_CHARS are checked each time, so the cache
    holds at most 256 x 64 KiB whatever clients send."""
    if not isinstance(schema, dict):
        raise InvalidRequestError("The JSON schema must be an object", param=where)
    text = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    problem = _cached_schema_problem(text) if len(text) <= CACHED_SCHEMA_CHARS else _schema_problem(text)
    if problem is not None:
        raise InvalidRequestError(problem, param=where)
    return text


def _schema_problem(text: str) -> str | None:
    """Why the schema (as JSON text) cannot be enforced, or None."""
    schema = json.loads(text)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "".join(f"[{p!r}]" for p in exc.path)
        return f"Invalid JSON schema{' at ' + path if path else ''}: {exc.message}"
    return _xgrammar_problem("from_json_schema", text)


_cached_schema_problem = functools.lru_cache(maxsize=256)(_schema_problem)


@functools.cache
def xgrammar() -> ModuleType | None:
    """xgrammar when it is installed (import it once at start-up: it loads torch), else None."""
    try:
        import xgrammar as module
    except ImportError:
        return None
    return module


def _xgrammar_check(constructor: str, source: str, where: str) -> None:
    problem = _xgrammar_problem(constructor, source)
    if problem is not None:
        raise InvalidRequestError(problem, param=where)


def _xgrammar_problem(constructor: str, source: str) -> str | None:
    """Why xgrammar (when installed) cannot compile the guide, or None."""
    module = xgrammar()
    if module is None:
        return None
    try:
        getattr(module.Grammar, constructor)(source)
    except (RuntimeError, ValueError) as exc:
        reason = _XGRAMMAR_PREFIX.sub("", str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        return f"The guide cannot be compiled: {reason}"
    return None
