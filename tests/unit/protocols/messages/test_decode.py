"""Messages requests in the core's terms: blocks -> turns, Claude Code's habits, tools, thinking, options."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.request import ConversationRequest, Turn
from gateway.errors import InvalidRequestError, UnsupportedFeatureError
from gateway.protocols.messages.decode import decode_messages
from gateway.protocols.messages.request import MessagesRequest
from gateway.protocols.messages.signatures import ThinkingSigner
from gateway.protocols.sealing import Sealer

SIGNER = ThinkingSigner(Sealer("unit-test-signing-key"))
WEATHER = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def decode(**fields: Any) -> ConversationRequest:
    body = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]} | fields
    return decode_messages(MessagesRequest.model_validate(body), SIGNER)


def turns(**fields: Any) -> list[tuple[str, str]]:
    return [(turn.role, turn.text) for turn in decode(**fields).conversation.turns]


def refused(**fields: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        decode(**fields)
    return caught.value


def test_system_text_blocks_and_leading_system_messages_make_the_first_turn() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "<reminder>\n\n"}, {"type": "text", "text": "Hi"}]},
    ]
    system = [
        {"type": "text", "text": "You are a bot.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "\nBe kind."},
    ]
    assert turns(system=system, messages=messages) == [
        ("system", "You are a bot.\nBe kind.\n\nBe brief."),
        ("user", "<reminder>\n\nHi"),
    ]


def test_claude_codes_billing_header_is_dropped_so_turns_share_their_prefix() -> None:
    def system(nonce: str) -> list[dict[str, str]]:
        header = f"x-anthropic-billing-header: cc_version=2.1.197.{nonce}; cc_entrypoint=cli; cch={nonce};"
        return [{"type": "text", "text": header}, {"type": "text", "text": "You are Claude Code."}]

    assert (
        turns(system=system("a1b2"))
        == turns(system=system("c3d4"))
        == [
            ("system", "You are Claude Code."),
            ("user", "Hi"),
        ]
    )
    as_string = "x-anthropic-billing-header: cch=99;\nYou are Claude Code."
    assert turns(system=as_string)[0] == ("system", "You are Claude Code.")
    later = {"role": "system", "content": [{"type": "text", "text": "x-anthropic-billing-header: cch=1;"}]}
    assert turns(messages=[{"role": "user", "content": "Hi"}, later]) == [("user", "Hi")]


def test_later_system_messages_stay_where_they_are() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "system", "content": "Available agents: ..."},
        {"role": "user", "content": "Go"},
        {"role": "system", "content": [{"type": "text", "text": "Reminder"}]},
    ]
    assert turns(system="S", messages=messages) == [
        ("system", "S"),
        ("user", "Hi"),
        ("assistant", "Hello"),
        ("system", "Available agents: ..."),
        ("user", "Go"),
        ("system", "Reminder"),
    ]


def test_claude_codes_unlisted_roles_are_user_turns() -> None:
    messages = [{"role": "ctx", "content": "context"}, {"role": "msg", "content": "message"}]
    assert turns(messages=messages) == [("user", "context"), ("user", "message")]


def test_a_tool_loop_becomes_calls_and_tool_turns_ahead_of_the_users_text() -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_abc", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And hurry."},
                {"type": "tool_result", "tool_use_id": "toolu_abc", "content": [
                    {"type": "text", "text": "Sunny"}, {"type": "tool_reference", "tool_name": "x"},
                    {"type": "text", "text": "20 C"},
                ], "is_error": True},
            ],
        },
    ]  # fmt: skip
    request = decode(messages=messages, tools=[WEATHER])
    _, assistant, tool, follow_up = request.conversation.turns
    assert assistant.text == "Looking." and assistant.tool_calls[0].name == "get_weather"
    assert assistant.tool_calls[0].id == tool.call_id == "abc"  # toolu_ comes off: the template sees the call id
    assert assistant.tool_calls[0].arguments == {"city": "Paris"}
    assert (tool.role, tool.text, tool.is_error) == ("tool", "Sunny\n20 C", True)
    assert tool.call_id_param == "messages[2].content[1].tool_use_id"
    assert (follow_up.role, follow_up.text) == ("user", "And hurry.")


def test_only_results_make_no_empty_user_turn() -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}]},
    ]
    assert [turn.role for turn in decode(messages=messages).conversation.turns] == ["user", "assistant", "tool"]


def signed_turn(thinking: str, signature: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": thinking, "signature": signature},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Hello"},
        ]},
        {"role": "user", "content": "More"},
    ]  # fmt: skip


def test_thinking_the_gateway_signed_goes_back_to_the_template_as_reasoning() -> None:
    request = decode(messages=signed_turn("Let me see.", SIGNER.sign("Let me see.")))
    assistant = request.conversation.turns[1]
    assert (assistant.reasoning, assistant.text) == ("Let me see.", "Hello")


@pytest.mark.parametrize(
    "signature",
    [
        SIGNER.sign("Something else."),
        ThinkingSigner(Sealer("another-deployments-key")).sign("Let me see."),
        "",
        "EqQBCkgIARABGAIiQL2Ao",  # an Anthropic-style signature
    ],
)
def test_a_forged_or_foreign_thinking_signature_is_a_400(signature: str) -> None:
    error = refused(messages=signed_turn("Let me see.", signature))
    assert error.param == "messages[1].content[0].signature"


@pytest.mark.parametrize(
    ("block", "param"),
    [
        ({"type": "image", "source": {"type": "file", "file_id": "file_1"}}, "content[0].source.type"),
        ({"type": "document", "source": {"type": "text", "data": "x"}}, "content[0].type"),
        ({"type": "search_result", "source": "x", "title": "t", "content": []}, "content[0].type"),
        ({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]}, "content[0].content[0].type"),
    ],
)  # fmt: skip
def test_blocks_the_gateway_cannot_serve_are_400s_naming_them(block: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedFeatureError) as caught:
        decode(messages=[{"role": "user", "content": [block]}])
    assert caught.value.param == f"messages[0].{param}"


def test_server_tools_are_400s_naming_their_type() -> None:
    with pytest.raises(UnsupportedFeatureError) as caught:
        decode(tools=[WEATHER, {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}])
    assert caught.value.param == "tools[1].type" and "web_search_20250305" in caught.value.message


def test_custom_tools_and_tool_choice() -> None:
    custom = WEATHER | {"type": "custom", "description": "d", "defer_loading": True, "cache_control": {}}
    tools = decode(tools=[custom]).tools
    assert tools.specs[0].name == "get_weather" and tools.specs[0].parameters_param == "tools[0].input_schema"
    assert (tools.choice.mode, tools.parallel) == ("auto", True)
    assert decode(tools=[WEATHER], tool_choice={"type": "any"}).tools.choice.mode == "required"
    named = decode(tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}).tools.choice
    assert (named.mode, named.name) == ("function", "get_weather")
    assert decode(tools=[WEATHER], tool_choice={"type": "none"}).tools.choice.mode == "none"
    assert not decode(tools=[WEATHER], tool_choice={"type": "auto", "disable_parallel_tool_use": True}).tools.parallel
    assert refused(tools=[WEATHER], tool_choice={"type": "tool", "name": "other"}).param == "tool_choice.name"
    assert refused(tool_choice={"type": "any"}).param == "tool_choice"
    assert refused(tools=[{"name": "bad name!", "input_schema": {}}]).param == "tools[0].name"
    assert refused(tools=[{"name": "x"}]).param == "tools[0].input_schema"


def test_thinking_options_reach_the_templates_switch() -> None:
    assert decode().reasoning.enabled is False  # type: ignore[union-attr]
    enabled = decode(thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=4096).reasoning
    assert (enabled.enabled, enabled.budget_tokens) == (True, 2048)  # type: ignore[union-attr]
    adaptive = decode(thinking={"type": "adaptive"}, output_config={"effort": "max"}).reasoning
    assert (adaptive.enabled, adaptive.effort) == (True, "high")  # type: ignore[union-attr]
    assert refused(thinking={"type": "enabled", "budget_tokens": 100}).param == "thinking.budget_tokens"
    assert refused(thinking={"type": "enabled", "budget_tokens": 2048}).param == "thinking.budget_tokens"  # >= max
    assert refused(thinking={"type": "adaptive", "display": "omitted"}).param == "thinking.display"
    assert refused(thinking={"type": "sometimes"}).param == "thinking.type"


def test_output_format_is_an_output_constraint() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    constraint = decode(output_config={"format": {"type": "json_schema", "schema": schema}}).constraint
    assert constraint is not None and (constraint.kind, constraint.value) == ("json_schema", schema)
    assert constraint.param == "output_config.format.schema"
    assert refused(output_format={"type": "regex"}).param == "output_format.type"


def test_clear_thinking_keeps_the_last_thinking_turns() -> None:
    second = {"type": "thinking", "thinking": "Two.", "signature": SIGNER.sign("Two.")}
    messages = [
        *signed_turn("One.", SIGNER.sign("One.")),
        {"role": "assistant", "content": [second]},
        {"role": "user", "content": "Again"},
    ]

    def reasoning(context_management: Any) -> list[str | None]:
        request = decode(messages=messages, context_management=context_management)
        return [turn.reasoning for turn in request.conversation.turns if turn.role == "assistant"]

    assert reasoning({"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}) == ["One.", "Two."]
    assert reasoning({"edits": [{"type": "clear_thinking_20251015"}]}) == [None, "Two."]
    keep_none = {"edits": [{"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 0}}]}
    assert reasoning(keep_none) == [None, None]
    error = refused(context_management={"edits": [{"type": "clear_tool_uses_20250919"}]})
    assert isinstance(error, UnsupportedFeatureError) and error.param == "context_management.edits[0].type"


def test_generation_options() -> None:
    request = decode(stop_sequences=["END", ""], temperature=0.0, top_k=5, stream=True, metadata={"user_id": "u"})
    options = request.options
    assert (options.max_tokens, options.stop, options.stream) == (100, ("END",), True)
    assert (options.sampling.temperature, options.sampling.top_k) == (0.0, 5)
    assert MessagesRequest.model_validate({"model": "m", "max_tokens": 1, "messages": [], "metadata": {"user_id": "u"}}
                                          | {"messages": [{"role": "user", "content": "x"}]}).user == "u"  # fmt: skip
    assert refused(mcp_servers=[{"type": "url", "url": "https://x"}]).param == "mcp_servers"


def test_an_assistant_turn_carries_its_calls_in_order() -> None:
    content = [
        {"type": "tool_use", "id": "toolu_1", "name": "a", "input": {"x": 1}},
        {"type": "tool_use", "id": "toolu_2", "name": "b", "input": {}},
    ]
    results = [{"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": "ok"} for i in (1, 2)]
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": results},
    ]
    assistant: Turn = decode(messages=messages).conversation.turns[1]
    assert [(call.id, call.name) for call in assistant.tool_calls] == [("1", "a"), ("2", "b")]
    not_an_object = {"type": "tool_use", "id": "t", "name": "a", "input": []}
    bad = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [not_an_object]}, messages[2]]
    assert refused(messages=bad).param == "messages[1].content[0].input"


def test_a_final_assistant_message_is_refused_rather_than_closed() -> None:
    prefill = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "{"},
        {"role": "system", "content": "x"},
    ]
    error = refused(messages=prefill)
    assert isinstance(error, UnsupportedFeatureError) and error.param == "messages[1]"
