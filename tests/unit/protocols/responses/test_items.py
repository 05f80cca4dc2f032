"""Responses' input items as the core's conversation: every item kind, Codex's replay shapes, and the 400s that
name the item."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.request import ToolCall
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.protocols.responses.items import REASONING_PURPOSE, conversation_of
from gateway.protocols.sealing import Sealer

SEALER = Sealer("unit-test-state-key-0123456789")


def turns(items: Any, instructions: str | None = None) -> list[tuple[str, str]]:
    return [(turn.role, turn.text) for turn in conversation_of(items, instructions, SEALER).turns]


def test_a_string_is_one_user_turn_and_instructions_come_first() -> None:
    conversation = conversation_of("Hi", "Be brief.", SEALER)
    assert [(t.role, t.text, t.param) for t in conversation.turns] == [
        ("system", "Be brief.", "instructions"),
        ("user", "Hi", "input"),
    ]
    assert conversation.param == "input" and not conversation.truncate
    assert conversation_of("Hi", None, SEALER, truncate=True).truncate


def test_messages_with_and_without_type_and_their_content_parts() -> None:
    items = [
        {"role": "developer", "content": "Rules."},
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "More rules."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Hel"}, {"type": "input_text", "text": "lo"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
    ]
    assert turns(items) == [("system", "Rules."), ("system", "More rules."), ("user", "Hello"), ("assistant", "No.")]


CODEX_REPLAY: list[dict[str, Any]] = [
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions/>"}]},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the files."}]},
    {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "Use ls."}]},
    {"type": "function_call", "name": "shell", "arguments": '{"command":["ls"]}', "call_id": "call_1"},
    {"type": "function_call_output", "call_id": "call_1", "output": "a.txt\nb.txt"},
    # As Codex replays its own messages: no id, no status; and an empty one before a call.
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Two files."}]},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Show a.txt"}]},
    {"type": "message", "role": "assistant", "content": []},
    {"type": "function_call", "name": "shell", "arguments": '{"command": ["cat", "a.t', "call_id": "call_2"},
    {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "bad args"}]},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Try again."}]},
]


def test_a_codex_replay_becomes_the_turns_a_chat_template_takes() -> None:
    conversation = conversation_of(CODEX_REPLAY, "You are Codex.", SEALER)
    shape = [(t.role, t.text, t.reasoning, t.tool_calls, t.call_id) for t in conversation.turns]
    assert shape == [
        ("system", "You are Codex.", None, (), None),
        ("system", "<permissions/>", None, (), None),
        ("user", "List the files.", None, (), None),
        ("assistant", "", "Use ls.", (ToolCall("call_1", "shell", {"command": ["ls"]}),), None),
        ("tool", "a.txt\nb.txt", None, (), "call_1"),
        ("assistant", "Two files.", None, (), None),
        ("user", "Show a.txt", None, (), None),
        # arguments the model cut short are replayed as they were written, not refused
        ("assistant", "", None, (ToolCall("call_2", "shell", '{"command": ["cat", "a.t'),), None),
        ("tool", "bad args", None, (), "call_2"),
        ("user", "Try again.", None, (), None),
    ]
    assert conversation.turns[4].call_id_param == "input[4].call_id"
    assert conversation.turns[3].param == "input[2]"


def test_consecutive_assistant_items_make_one_model_turn() -> None:
    items = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "w", "arguments": "{}", "status": "completed"},
        {"type": "function_call", "call_id": "c2", "name": "w", "arguments": ""},
    ]  # fmt: skip
    [_, assistant] = conversation_of(items, None, SEALER).turns
    assert assistant.text == "Checking."
    assert assistant.tool_calls == (ToolCall("c1", "w", {}), ToolCall("c2", "w", {}))


def test_sealed_reasoning_is_opened_and_an_altered_blob_is_refused() -> None:
    blob = SEALER.seal("secret thoughts", REASONING_PURPOSE)
    items = [{"role": "user", "content": "x"}, {"type": "reasoning", "summary": [], "encrypted_content": blob},
             {"role": "assistant", "content": "y"}]  # fmt: skip
    assert conversation_of(items, None, SEALER).turns[1].reasoning == "secret thoughts"
    altered = blob[:-2] + ("A" if blob[-2] != "A" else "B") + blob[-1]
    for bad in (altered, Sealer("another-deployment-key-xyz").seal("x", REASONING_PURPOSE), "plain text"):
        items[1]["encrypted_content"] = bad
        with pytest.raises(InvalidRequestError) as refused:
            conversation_of(items, None, SEALER)
        assert refused.value.param == "input[1].encrypted_content"


def test_summary_is_the_reasoning_when_there_is_nothing_else() -> None:
    items = [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "Short."}]}]
    assert conversation_of(items, None, SEALER).turns[0].reasoning == "Short."


@pytest.mark.parametrize(
    ("items", "param", "unsupported"),
    [
        ([{"type": "web_search_call", "id": "ws_1"}], "input[0].type", True),
        ([{"type": "wizardry"}], "input[0].type", False),
        ([{"content": "no role, no type"}], "input[0].type", False),
        ([{"role": "user", "content": [{"type": "input_file", "file_id": "x"}]}], "input[0].content[0].type", True),
        ([{"role": "user", "content": [{"type": "text", "text": "x"}]}], "input[0].content[0].type", False),
        ([{"role": "critic", "content": "x"}], "input[0].role", False),
        (["not an object"], "input[0]", False),
        ([{"type": "function_call_output", "output": "x"}], "input[0].call_id", False),
        ([{"type": "function_call", "call_id": "c", "arguments": "{}"}], "input[0].name", False),
        ([{"type": "item_reference", "id": "msg_1"}], "input[0]", False),
        ([{"type": "reasoning", "content": [{"type": "summary_text", "text": "x"}]}], "input[0].content[0]", False),
    ],
)
def test_items_that_cannot_be_used_are_400s_naming_them(items: Any, param: str, unsupported: bool) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        conversation_of(items, None, SEALER)
    assert refused.value.param == param
    assert isinstance(refused.value, UnsupportedFeatureError) == unsupported


def test_input_is_required_and_is_a_string_or_a_list() -> None:
    with pytest.raises(InvalidRequestError) as missing:
        conversation_of(None, "x", SEALER)
    assert (missing.value.param, missing.value.code) == ("input", "missing_required_parameter")
    with pytest.raises(InvalidRequestError):
        conversation_of({"role": "user"}, None, SEALER)
