"""Model outputs per parser with the content and calls they must give, and helpers to merge parser events."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.openai.events import OutputEvent, ReasoningEvent, TextEvent, ToolCallEvent

Call = tuple[str, dict[str, Any] | str]  # a call cut short keeps its arguments' text
Sample = tuple[str, str, list[Call]]  # model output, content, calls

CB, CE = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
B, E, S = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"

SAMPLES: dict[str, list[Sample]] = {
    "hermes": [
        (
            'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
            "Let me check.\n",
            [("get_weather", {"city": "Paris"})],
        ),
        (
            '<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n<tool_call>\n'
            '{"name": "b", "arguments": {"s": "café ☕ </tool"}}\n</tool_call>',
            "",
            [("a", {"x": 1}), ("b", {"s": "café ☕ </tool"})],
        ),
        ('<tool_call>{"name":"a","arguments":{}}</tool_call>\n\nDone.', "Done.", [("a", {})]),
        ('<tool_call>{"name": "a", "arguments": "{\\"x\\": [1]}"}</tool_call>', "", [("a", {"x": [1]})]),
        ('<tool_call>{"name": "a", "parameters": {"x": null}}', "", [("a", {"x": None})]),
        (
            'x <tool_call>{"name": "a", "arguments": {]}</tool_call> y',
            'x <tool_call>{"name": "a", "arguments": {]}</tool_call> y',
            [],
        ),
        ('<tool_call>{"name": "a", "argu', '<tool_call>{"name": "a", "argu', []),
        ("if a < b and b <tool", "if a < b and b <tool", []),
        ("<tool_call>[1, 2]</tool_call>", "<tool_call>[1, 2]</tool_call>", []),
        (
            '<tool_call>{"name": "write", "arguments": {"text": "a </tool_call> b"}}</tool_call>',
            "",
            [("write", {"text": "a </tool_call> b"})],
        ),
        ('<tool_call>{"name": "a"} oops</tool_call>ok', '<tool_call>{"name": "a"} oops</tool_call>ok', []),
        ("<tool_call>\n", "<tool_call>\n", []),
        ("Wrap calls in <tool_call> tags.</tool_call>", "Wrap calls in <tool_call> tags.</tool_call>", []),
        ("no markup at all, just a long answer. " * 3, "no markup at all, just a long answer. " * 3, []),
    ],
    "llama3_json": [
        ('{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [("get_weather", {"city": "Paris"})]),
        (
            '<|python_tag|>{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {}}',
            "",
            [("a", {"x": 1}), ("b", {})],
        ),
        ('I will call <|python_tag|>{"name": "a", "parameters": {}}', "I will call ", [("a", {})]),
        (
            ' \n{"name": "a", "parameters": {"s": "}{;"}}  ; {"name": "b", "arguments": {"y": [1, {"z": null}]}}\n',
            "",
            [("a", {"s": "}{;"}), ("b", {"y": [1, {"z": None}]})],
        ),
        ('{"name": "a", "parameters": {"x": 1}} and some text', "and some text", [("a", {"x": 1})]),
        ('{"answer": 42}', '{"answer": 42}', []),
        ("The set {1, 2} is small.", "The set {1, 2} is small.", []),
        ('<|python_tag|>brave_search.call(query="x")', '<|python_tag|>brave_search.call(query="x")', []),
        ('{"name": "a", "parameters": {"x": ', '{"name": "a", "parameters": {"x": ', []),
        ("ends with <|python", "ends with <|python", []),
    ],
    "mistral": [
        (
            '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]',
            "",
            [("get_weather", {"city": "Paris"})],
        ),
        (
            '[TOOL_CALLS] [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]',
            "",
            [("a", {"x": 1}), ("b", {})],
        ),
        (
            'Sure.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}',
            "Sure.",
            [("get_weather", {"city": "Paris"}), ("get_time", {})],
        ),
        ('[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "[x]"}', "", [("get_weather", {"city": "[x]"})]),
        ('[TOOL_CALLS]get_weather{"city": "Paris"} Done.', "Done.", [("get_weather", {"city": "Paris"})]),
        (
            '[TOOL_CALLS][{"name": "a", "arguments": {"x": }]',
            '[TOOL_CALLS][{"name": "a", "arguments": {"x": }]',
            [],
        ),
        ('[TOOL_CALLS]{"no": "name"}', '[TOOL_CALLS]{"no": "name"}', []),
        ("see [1] and [TOOL_CALL", "see [1] and [TOOL_CALL", []),
        ("[TOOL_CALLS] is the marker.", "[TOOL_CALLS] is the marker.", []),
    ],
    "deepseek_v3": [
        (
            f"Let me look.{CB}{B}function{S}get_weather\n```json\n" + '{"city": "Paris"}\n```' + f"{E}{CE}",
            "Let me look.",
            [("get_weather", {"city": "Paris"})],
        ),
        (
            f"{CB}{B}function{S}a\n```json\n" + '{"x": 1}\n```' + f"{E}\n{B}function{S}b\n```json\n{{}}\n```{E}{CE}",
            "",
            [("a", {"x": 1}), ("b", {})],
        ),
        (
            f'{CB}{B}get_time{S}{{"tz": "UTC"}}{E}{B}b{S}{{}}{E}{CE}\nThat is all.',
            "That is all.",
            [
                ("get_time", {"tz": "UTC"}),
                ("b", {}),
            ],
        ),
        (f'{CB}{B}a{S}{{"x": 1}}{E}', "", [("a", {"x": 1})]),
        (f"{CB}{B}function{S}a\n```json\n{{bad}}\n```{E}{CE}", f"{B}function{S}a\n```json\n{{bad}}\n```{E}", []),
        (f"Hello {CB}oops", f"Hello {CB}oops", []),
        ("Hello <｜tool▁calls", "Hello <｜tool▁calls", []),
    ],
    "pythonic": [
        (
            "[get_weather(city=\"Paris\"), get_time(tz='UTC', offset=-1.5)]",
            "",
            [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "UTC", "offset": -1.5})],
        ),
        ('<|python_start|>[search(q="a, b]", n=3)]<|python_end|>', "", [("search", {"q": "a, b]", "n": 3})]),
        (
            '[f(x={"a": [1, (2, 3)], "b": True})]\nDone.',
            "Done.",
            [("f", {"x": {"a": [1, [2, 3]], "b": True}})],
        ),
        ("  [ns.tool(v=None)]", "", [("ns.tool", {"v": None})]),
        ("[1, 2] is a list", "[1, 2] is a list", []),
        ('[get_weather("Paris")]', '[get_weather("Paris")]', []),
        ("Text first [f(x=1)]", "Text first [f(x=1)]", []),
        ("[f(x=1", "[f(x=1", []),
        ("[", "[", []),
    ],
    "forced": [
        ('[{"name": "a", "arguments": {"x": 1}}]', "", [("a", {"x": 1})]),
        (
            ' [ {"name": "a", "arguments": {}} , {"name": "b", "arguments": {"y": "]"}} ] ',
            "",
            [("a", {}), ("b", {"y": "]"})],
        ),
        ('{"name": "a", "arguments": {}}', "", [("a", {})]),
        # Cut by max_tokens: a call whose name was written is a call, its arguments as far as they got.
        ('[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "argu', "", [("a", {"x": 1}), ("b", "")]),
        ('[{"name": "a", "arguments": {"x": 1, "y": "tw', "", [("a", '{"x": 1, "y": "tw')]),
        ('[{"name": "a", "arguments": {"x": 1}},', "", [("a", {"x": 1})]),
        ('[{"name": "a", "arguments": {"x": 1}}, {"na', ', {"na', [("a", {"x": 1})]),
        ('[{"name": "a", "arguments": {"x": 1}}, 5]', ", 5]", [("a", {"x": 1})]),
        ("not json", "not json", []),
    ],
}


def counter_ids() -> Any:
    """A deterministic id generator."""
    numbers = itertools.count()
    return lambda: f"call_{next(numbers)}"


def feed_all(parser: Any, pieces: Iterable[str]) -> list[OutputEvent]:
    """Every event of feeding `pieces` and finishing."""
    events: list[OutputEvent] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    events.extend(parser.finish())
    return events


def split(text: str, cuts: Sequence[int]) -> list[str]:
    """`text` cut at the given positions."""
    points = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(points)]


def merge(events: Sequence[OutputEvent]) -> tuple[str, str, list[Call]]:
    """(content, reasoning, calls) of a choice, after checking the OpenAI delta shape of the call events."""
    content = "".join(e.text for e in events if isinstance(e, TextEvent))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningEvent))
    names: list[str] = []
    arguments: list[str] = []
    ids: set[str] = set()
    for event in events:
        if not isinstance(event, ToolCallEvent):
            continue
        if event.call_index == len(names):  # a new call: id and name first
            assert event.id and event.name and event.arguments == "", event
            assert event.id not in ids
            ids.add(event.id)
            names.append(event.name)
            arguments.append("")
        else:
            assert event.call_index == len(names) - 1 and event.id is None and event.name is None, event
            arguments[-1] += event.arguments
    calls: list[Call] = []
    for name, text in zip(names, arguments, strict=True):
        try:
            value = json.loads(text)  # exactly one JSON value
        except ValueError:
            calls.append((name, text))  # a forced call cut short: its arguments as far as they got
            continue
        assert isinstance(value, dict)
        calls.append((name, value))
    return content, reasoning, calls
