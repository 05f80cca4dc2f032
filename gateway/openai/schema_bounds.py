"""Bounds on guides and tools, checked cheaply on the event loop before any heavy work starts.

Meta-schema validation and xgrammar's compile run in a worker process (openai/guide_checker.py), and the engine
compiles every guide again over the whole vocabulary. Both grow faster than the guide's text in some of its
dimensions, so each dimension has a limit (measured with xgrammar 0.2.9 on a 151k-token vocabulary, one thread:
a `$ref` chain of 1,000 links took 0.9 s to convert and 0.9 s to compile; 20,000 enum values 5.6 s; one object
with 1,000 optional properties 97 s; 100 nested arrays 0.3 s, and jsonschema's check recurses ~10 frames per
level). Each refusal is a 400 naming the field, the limit and the flag that sets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import InvalidRequestError


@dataclass(frozen=True, slots=True)
class GuideLimits:
    """How large a guide (a JSON schema, regex, grammar or choice list) and the request's tools may be."""

    max_bytes: int = 128 * 1024  # one guide's text: a schema as compact JSON, a regex, a grammar, the choices
    max_depth: int = 64  # nesting of a schema document (objects and arrays)
    max_refs: int = 512  # `$ref`s in one schema
    max_enum_values: int = 2048  # enum values, choices and anyOf/oneOf branches of one guide, together
    max_properties: int = 128  # properties of one object schema
    max_tools: int = 256
    max_tools_bytes: int = 1024 * 1024  # every tool definition of a request, as compact JSON
    check_timeout_s: float = 10.0  # meta-schema validation and xgrammar's compile, per request


@dataclass(slots=True)
class SchemaSize:
    """What a schema document holds, as far as the limits care."""

    depth: int = 0
    refs: int = 0
    enum_values: int = 0
    widest_object: int = 0


def compact_json(value: Any, where: str) -> str:
    """`value` as compact JSON text (UTF-8 as is, like the engine reads it); 400 naming the place of a lone
    surrogate or of a number JSON cannot carry."""
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        path = _unencodable_path(value)
        if path is not None:
            raise InvalidRequestError(
                "The value contains a lone surrogate (invalid Unicode)", param=where + path
            ) from None
        raise InvalidRequestError(f"The value cannot be encoded as JSON: {exc}", param=where) from None
    except orjson.JSONEncodeError as exc:  # nesting beyond orjson's 255 levels (request bodies stop at 200)
        raise InvalidRequestError(f"The value cannot be encoded as JSON: {exc}", param=where) from None


def json_value_problem(value: Any, max_depth: int) -> str | None:
    """Why a decoded JSON value cannot reach a chat template or a tensor (nested too deeply, or a string that is
    not valid Unicode, and where), or None."""
    depth = measure_schema(value).depth
    if depth > max_depth:
        return f"it is nested {depth} levels deep, more than {max_depth}"
    path = _unencodable_path(value)
    if path is not None:
        return f"it contains a lone surrogate (invalid Unicode) at '{path or '.'}'"
    return None


def _unencodable_path(value: Any) -> str | None:
    """Where (".a[2].b") the first string that is not valid Unicode sits in a decoded JSON value, if any."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not encodable(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if not encodable(key):
                    return path
                stack.append((child, f"{path}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
    return None


def encodable(text: str) -> bool:
    """Whether `text` can become UTF-8 (no lone surrogates from `\\udXXX` escapes)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def measure_schema(schema: Any) -> SchemaSize:
    """Depth, `$ref`s, enum values (with anyOf/oneOf branches) and the widest object of a schema document.

    Iterative, so any depth is measured without recursion; the caller bounds the text's size first."""
    size = SchemaSize()
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        size.depth = max(size.depth, depth)
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    size.refs += 1
                elif key in ("enum", "anyOf", "oneOf") and isinstance(value, list):
                    size.enum_values += len(value)
                elif key == "properties" and isinstance(value, dict):
                    size.widest_object = max(size.widest_object, len(value))
                if isinstance(value, dict | list):
                    stack.append((value, depth + 1))
        else:
            stack.extend((value, depth + 1) for value in node if isinstance(value, dict | list))
    return size


def schema_size_problem(text: str, schema: Any, limits: GuideLimits) -> str | None:
    """Why a schema (its compact text and its value) is beyond the limits, or None."""
    problem = text_size_problem(text, "The JSON schema", limits)
    if problem is not None:
        return problem
    size = measure_schema(schema)
    for found, limit, what, flag in (
        (size.depth, limits.max_depth, "levels of nesting", "--max-guide-depth"),
        (size.refs, limits.max_refs, "$refs", "--max-guide-refs"),
        (size.enum_values, limits.max_enum_values, "enum values and anyOf/oneOf branches", "--max-guide-enum-values"),
        (size.widest_object, limits.max_properties, "properties in one object", "--max-guide-properties"),
    ):
        if found > limit:
            return f"The JSON schema has {found} {what}; this gateway takes at most {limit} ({flag})"
    return None


def text_size_problem(text: str, what: str, limits: GuideLimits) -> str | None:
    """Why a guide's text is too long (in UTF-8 bytes), or None."""
    size = len(text) if text.isascii() else len(text.encode(errors="replace"))
    if size > limits.max_bytes:
        return f"{what} is {size} bytes long; this gateway takes at most {limits.max_bytes} (--max-guide-bytes)"
    return None


def check_choices(choices: Sequence[str], where: str, limits: GuideLimits) -> None:
    """A choice list within the enum-value and size limits, every choice valid Unicode."""
    if len(choices) > limits.max_enum_values:
        raise InvalidRequestError(
            f"There are {len(choices)} choices; this gateway takes at most {limits.max_enum_values} "
            "(--max-guide-enum-values)",
            param=where,
        )
    for index, choice in enumerate(choices):
        if not encodable(choice):
            raise InvalidRequestError(
                "The choice contains a lone surrogate (invalid Unicode)", param=f"{where}[{index}]"
            )
    problem = text_size_problem("".join(choices), "The choices' text", limits)
    if problem is not None:
        raise InvalidRequestError(problem, param=where)


def check_guide_text(text: str, what: str, where: str, limits: GuideLimits) -> None:
    """A regex or grammar within the size limit and valid Unicode."""
    if not encodable(text):
        raise InvalidRequestError(f"{what} contains a lone surrogate (invalid Unicode)", param=where)
    problem = text_size_problem(text, what, limits)
    if problem is not None:
        raise InvalidRequestError(problem, param=where)
