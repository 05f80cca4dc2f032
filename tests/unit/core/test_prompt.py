"""A conversation rendered into a prompt: turns as templates take them, reasoning options to templates that read
them, and template failures named by the protocol's field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import gateway.devstack
from gateway.core.prompt import reasoning_variables, render_prompt, template_message
from gateway.core.request import Conversation, ReasoningOptions, ToolCall, Turn
from gateway.core.tokens import ChatTemplate
from gateway.errors import InvalidRequestError

QWEN = Path(gateway.devstack.__file__).parent / "templates" / "qwen.jinja"


@pytest.fixture
def qwen(tokenizer: Any) -> ChatTemplate:
    return ChatTemplate(tokenizer, QWEN)


def test_a_turn_takes_the_keys_templates_read_and_only_those_it_has() -> None:
    assert template_message(Turn("user", "hi")) == {"role": "user", "content": "hi"}
    call = ToolCall("c1", "get_weather", {"city": "Oslo"})
    assistant = Turn("assistant", "", tool_calls=(call,), reasoning="cold up north")
    assert template_message(assistant) == {
        "role": "assistant",
        "content": "",
        "reasoning_content": "cold up north",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
        ],
    }
    result = Turn("tool", "boom", call_id="c1", is_error=True)
    assert template_message(result) == {"role": "tool", "content": "boom", "tool_call_id": "c1", "is_error": True}


def test_reasoning_reaches_the_template_that_reads_it(qwen: ChatTemplate) -> None:
    conversation = Conversation((Turn("user", "Hi"),))
    thinking_off = render_prompt(conversation, qwen, reasoning=ReasoningOptions(enabled=False))
    assert thinking_off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert render_prompt(conversation, qwen).endswith("<|im_start|>assistant\n")
    # The qwen template reads enable_thinking, not the other names: only that one is passed.
    options = ReasoningOptions(effort="high", enabled=True, budget_tokens=100)
    assert reasoning_variables(options, qwen) == {"enable_thinking": True}


def test_the_assistants_reasoning_is_given_back_to_the_template(qwen: ChatTemplate) -> None:
    turns = (Turn("user", "Hi"), Turn("assistant", "Hello", reasoning="be nice"), Turn("user", "Again"))
    assert "<think>\nbe nice\n</think>\n\nHello" in render_prompt(Conversation(turns), qwen)


def test_a_template_failure_names_the_protocols_field(qwen: ChatTemplate) -> None:
    with pytest.raises(InvalidRequestError) as info:
        render_prompt(Conversation((Turn("wizard", "x"),), param="input"), qwen)  # type: ignore[arg-type]
    assert info.value.param == "input" and "Unsupported role" in info.value.message
