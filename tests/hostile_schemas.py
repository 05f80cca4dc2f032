"""Hostile guides and tools (issue 26): the audit's attacks as builders, and a hypothesis strategy of them.

The builders make the exact attacks of the issue ($ref chains, deep nesting, huge enums, thousands of tools,
lone surrogates); `hostile_requests` draws chat bodies that put such schemas, choices and strings in every place
a guide or a tool can come from. Bodies are serialised with `json.dumps` (ASCII escapes), so a lone surrogate
travels as the `\\udXXX` escape clients send.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

LONE_SURROGATES = ["\ud800", "\udfff", "a\ud83db", "\ude00\ud83d"]


def ref_chain(links: int) -> dict[str, Any]:
    """An object whose one property resolves through `links` `$ref`s to a string."""
    defs: dict[str, Any] = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(links)}
    defs[f"d{links}"] = {"type": "string"}
    return {"type": "object", "properties": {"a": {"$ref": "#/$defs/d0"}}, "required": ["a"], "$defs": defs}


def nested(levels: int, kind: str = "array") -> dict[str, Any]:
    """`levels` schema levels of arrays (one JSON level each) or objects (two) around a string."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        if kind == "array":
            schema = {"type": "array", "items": schema}
        else:
            schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def large_enum(values: int) -> dict[str, Any]:
    """An object with one property of `values` integer enum values (about 6 bytes each)."""
    return {"type": "object", "properties": {"a": {"enum": list(range(values))}}, "required": ["a"]}


def wide_object(properties: int) -> dict[str, Any]:
    """An object of `properties` optional string properties."""
    return {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(properties)}}


def tool(name: str, parameters: Any, description: str = "a tool") -> dict[str, Any]:
    """An OpenAI function tool."""
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def distinct_tools(count: int) -> list[dict[str, Any]]:
    """`count` tools whose schemas all differ (no verdict can be reused)."""
    return [
        tool(f"tool_{i}", {"type": "object", "properties": {f"arg_{i}": {"type": "integer", "maximum": i}}})
        for i in range(count)
    ]


def json_schema_format(schema: Any) -> dict[str, Any]:
    """`response_format` of type json_schema."""
    return {"type": "json_schema", "json_schema": {"name": "hostile", "schema": schema}}


def chat_body(model: str, **fields: Any) -> dict[str, Any]:
    """A one-message chat request with `fields`."""
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **fields}


def encode(body: Any) -> bytes:
    """The body as clients send it: JSON with ASCII escapes (so lone surrogates travel as escapes)."""
    return json.dumps(body).encode()


# --- the strategy -----------------------------------------------------------------------------------------------

surrogate_texts = st.builds(lambda s, pre: pre + s, st.sampled_from(LONE_SURROGATES), st.text(max_size=4))


@st.composite
def with_surrogate(draw: st.DrawFn, schema: Any) -> Any:
    """`schema` with a lone surrogate put in one of its strings (a description, a key, an enum value)."""
    text = draw(surrogate_texts)
    place = draw(st.sampled_from(["description", "key", "enum", "title"]))
    if not isinstance(schema, dict):
        return {"description": text}
    if place == "key":
        return {**schema, "properties": {text: {"type": "string"}}}
    if place == "enum":
        return {**schema, "enum": ["ok", text]}
    return {**schema, place: text}


@st.composite
def hostile_schemas(draw: st.DrawFn) -> Any:
    """A schema that is deep, a long `$ref` chain, a huge enum, wide, holds a lone surrogate, or a mix."""
    kind = draw(st.sampled_from(["chain", "nested", "enum", "wide", "surrogate", "mixed", "benign"]))
    if kind == "chain":
        schema = ref_chain(draw(st.sampled_from([1, 50, 513, 2_000, 10_000])))
    elif kind == "nested":
        schema = nested(draw(st.sampled_from([5, 63, 65, 100, 150])), draw(st.sampled_from(["array", "object"])))
    elif kind == "enum":
        schema = large_enum(draw(st.sampled_from([3, 2_048, 2_049, 20_000])))
    elif kind == "wide":
        schema = wide_object(draw(st.sampled_from([10, 128, 129, 1_000])))
    elif kind == "benign":
        schema = {"type": "object", "properties": {"x": {"type": draw(st.sampled_from(["string", "integer"]))}}}
    else:
        schema = nested(draw(st.integers(1, 8))) if kind == "surrogate" else large_enum(draw(st.integers(1, 300)))
    if kind in ("surrogate", "mixed") or draw(st.integers(0, 5)) == 0:
        schema = draw(with_surrogate(schema))
    return schema


hostile_choices = st.one_of(
    st.builds(lambda n: [f"c{i}" for i in range(n)], st.sampled_from([1, 2_048, 2_049, 20_000])),
    st.builds(lambda t: ["ok", t], surrogate_texts),
)


@st.composite
def hostile_requests(draw: st.DrawFn, model: str) -> dict[str, Any]:
    """A chat body with a hostile schema, choice list, regex or tool set where a guide or a tool comes from."""
    schema = draw(hostile_schemas())
    place = draw(
        st.sampled_from(
            ["response_format", "structured_outputs", "guided_json", "tool", "forced_tool", "choice", "regex",
             "tool_description", "tool_arguments", "many_tools"]
        )
    )  # fmt: skip
    if place == "response_format":
        return chat_body(model, response_format=json_schema_format(schema))
    if place == "structured_outputs":
        return chat_body(model, structured_outputs={"json": schema})
    if place == "guided_json":
        return chat_body(model, guided_json=schema if draw(st.booleans()) else json.dumps(schema))
    if place in ("tool", "forced_tool"):
        forced = {"tool_choice": "required"} if place == "forced_tool" else {}
        return chat_body(model, tools=[tool("f", schema)], **forced)
    if place == "choice":
        choices = draw(hostile_choices)
        return chat_body(model, **({"guided_choice": choices} if draw(st.booleans()) else
                                   {"structured_outputs": {"choice": choices}}))  # fmt: skip
    if place == "regex":
        pattern = draw(st.one_of(surrogate_texts, st.sampled_from(["a" * 200_000, "(a|b)+", "[0-9]{1,3}"])))
        return chat_body(model, guided_regex=pattern)
    if place == "tool_description":
        return chat_body(model, tools=[tool("f", {"type": "object"}, description=draw(surrogate_texts))])
    if place == "tool_arguments":
        arguments = json.dumps({"a": draw(surrogate_texts)})  # the escape inside the arguments' own JSON
        call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        return {"model": model, "messages": [{"role": "assistant", "content": None, "tool_calls": [call]}]}
    return chat_body(model, tools=distinct_tools(draw(st.sampled_from([3, 256, 257, 2_000]))))
