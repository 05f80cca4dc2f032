"""Guided decoding: an output constraint or a forced tool call as a TensorRT-LLM guide (`guide_type`, `guide`).

TensorRT-LLM's guide types are `json` (any JSON object; no guide text), `json_schema`, `regex` and `ebnf_grammar`
(no `structural_tag`). A guide comes from:
- an output constraint (core/request.py's `OutputConstraint`: json_object, json_schema, regex, choice, grammar),
  which each protocol reads from its own fields (chat: `response_format`, `structured_outputs`, `guided_*`);
- a forced tool call (tool choice `required` or a named function): a JSON schema for a list of calls
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

from gateway.core.compact_json import ANY_OBJECT_SCHEMA, cached_compact_json_grammar, compact_json_grammar
from gateway.errors import InvalidRequestError

if TYPE_CHECKING:
    from gateway.core.request import OutputConstraint, ToolChoice, ToolSpec

_XGRAMMAR_PREFIX = re.compile(r"^\[[^\]]*\]\s*\S+:\d+:\s*")  # "[17:42:07] /project/cpp/x.cc:94: "


@dataclass(frozen=True, slots=True)
class Guide:
    """A TensorRT-LLM guided-decoding request: `guided_decoding_guide_type` and `guided_decoding_guide`."""

    type: str  # "json", "json_schema", "regex", "ebnf_grammar"
    guide: str | None  # None for "json"


JSON_OBJECT = Guide("json", None)


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


def constraint_guide(constraint: OutputConstraint) -> Guide:
    """The guide that enforces an output constraint, after its schema, pattern, choices or grammar is checked."""
    kind, value, where = constraint.kind, constraint.value, constraint.param
    if kind == "json_object":
        return JSON_OBJECT
    if kind == "json_schema":
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
