"""Filling `config.pbtxt` templates: `${name}` placeholders, NVIDIA's `fill_template.py` lines, unset parameters.

A placeholder inside a `parameters: { key: ... value: { string_value: "${name}" } }` block is optional: left
without a value, the whole block is removed, which the TensorRT-LLM backend treats exactly like an unparsable
value (it logs that the parameter is not set and uses its default). Any other placeholder must get a value.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from gateway.errors import ConfigurationError

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
PARAMETER_BLOCK = re.compile(
    r'^parameters:\s*\{\s*key:\s*"(?P<key>[^"]+)"\s*value:\s*\{\s*string_value:\s*"\$\{(?P<name>\w+)\}"\s*\}\s*\}\n?',
    re.MULTILINE,
)
# fill_template.py splits on commas not preceded by a backslash and takes the rest after the first colon.
UNESCAPED_COMMA = re.compile(r"(?<!\\),")


def placeholders(text: str) -> set[str]:
    """The `${name}` placeholders in `text`."""
    return set(PLACEHOLDER.findall(text))


def optional_placeholders(text: str) -> set[str]:
    """Placeholders that are the whole value of a `parameters` block (removable when unset)."""
    return {match["name"] for match in PARAMETER_BLOCK.finditer(text)}


def parse_fill_line(line: str) -> dict[str, str]:
    """`key:value,key:value` as NVIDIA's fill_template.py reads it (`\\,` keeps a comma inside a value)."""
    values: dict[str, str] = {}
    for item in UNESCAPED_COMMA.split(line):
        if not item:
            continue
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise ConfigurationError(f"fill line item {item!r} is not key:value")
        values[key] = value.replace("\\,", ",")
    return values


def check_known(text: str, values: Mapping[str, str], model: str) -> None:
    """Like fill_template.py, refuse a key that the template does not have (a typo would be silently ignored)."""
    unknown = sorted(set(values) - placeholders(text))
    if unknown:
        raise ConfigurationError(f"{model}: no placeholder {', '.join(unknown)} in its config.pbtxt")


def render(text: str, values: Mapping[str, str], model: str, required: frozenset[str] = frozenset()) -> str:
    """Fill every placeholder, drop optional parameters without a value; error on anything left unfilled.

    `required` names parameters that look optional but without which the model does not load.
    """
    missing = sorted(required - {name for name, value in values.items() if value})
    if missing:
        raise ConfigurationError(f"{model}: {', '.join(missing)} must be set (the model does not load without it)")

    def drop_unset(match: re.Match[str]) -> str:
        return match.group(0) if match["name"] in values else ""

    filled = string.Template(PARAMETER_BLOCK.sub(drop_unset, text)).safe_substitute(values)
    left = sorted(placeholders(filled))
    if left:
        raise ConfigurationError(f"{model}: no value for {', '.join(left)}")
    return filled
