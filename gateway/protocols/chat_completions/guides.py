"""Chat's output constraints: `response_format`, vLLM's `structured_outputs` and its older `guided_*` fields.

- `response_format`: `text`, `json_object`, `json_schema` (`strict` or not: the engine enforces it either way);
- vLLM's `structured_outputs`: one of `json`, `regex`, `choice`, `grammar`, `json_object`;
- vLLM's older top-level `guided_json`, `guided_regex`, `guided_choice`, `guided_grammar`.

At most one of them: two are a 400. The shapes are checked here; the schema, pattern, choices or grammar itself
is checked and compiled by the core (core/guides.py), which names the param set here.
"""

from __future__ import annotations

from typing import Any

from gateway.core.request import ConstraintKind, OutputConstraint
from gateway.core.schema_bounds import encodable
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.protocols.openai_shared import SCHEMA_NAME

LEGACY = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
_STRUCTURED = ("json", "regex", "choice", "grammar", "json_object")
_KINDS: dict[str, ConstraintKind] = {"json": "json_schema", "regex": "regex", "choice": "choice", "grammar": "grammar"}


def output_constraint(response_format: Any, structured_outputs: Any, **legacy: Any) -> OutputConstraint | None:
    """The one constraint a request asks for (`legacy` takes the `guided_*` fields), or None."""
    unknown = set(legacy) - set(LEGACY)
    if unknown:
        raise TypeError(f"unknown guide fields: {sorted(unknown)}")
    sources = [
        constraint
        for constraint in (
            response_format_constraint(response_format),
            structured_outputs_constraint(structured_outputs),
            *(legacy_constraint(name, legacy.get(name)) for name in LEGACY),
        )
        if constraint is not None
    ]
    if len(sources) > 1:
        raise InvalidRequestError(
            f"Only one of response_format, structured_outputs and guided_* can be given (got {sources[0].field} and "
            f"{sources[1].field})",
            param=sources[1].field,
        )
    return sources[0] if sources else None


def response_format_constraint(response_format: Any) -> OutputConstraint | None:
    """OpenAI's `response_format`."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputConstraint("json_object", field="response_format")
    if kind != "json_schema":
        raise InvalidRequestError(
            "response_format.type must be 'text', 'json_object' or 'json_schema'", param="response_format.type"
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequestError("response_format.json_schema must be an object", param="response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not SCHEMA_NAME.fullmatch(name):
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
        return OutputConstraint("json_object", field="response_format")
    return OutputConstraint("json_schema", schema, "response_format.json_schema.schema", "response_format")


def structured_outputs_constraint(structured_outputs: Any) -> OutputConstraint | None:
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
        return OutputConstraint("json_object", field="structured_outputs")
    return _typed_constraint(key, value, where, "structured_outputs")


def legacy_constraint(field: str, value: Any) -> OutputConstraint | None:
    """One of vLLM's older top-level `guided_json`, `guided_regex`, `guided_choice`, `guided_grammar`."""
    if value is None:
        return None
    return _typed_constraint(field.removeprefix("guided_"), value, field, field)


def _typed_constraint(key: str, value: Any, where: str, field: str) -> OutputConstraint:
    # A schema sent as JSON text stays text: the core bounds it before it is parsed.
    return OutputConstraint(_KINDS[key], value, where, field)
