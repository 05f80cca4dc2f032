"""The encoder's rules that no scripted stream reaches easily: stop reasons, the usage split, ids, signatures."""

from __future__ import annotations

from gateway.core.events import FinishEvent
from gateway.core.usage import Usage
from gateway.protocols.messages.encode import stop_reason, usage_json
from gateway.protocols.messages.ids import call_id_of_tool_use, tool_use_id
from gateway.protocols.messages.signatures import ThinkingSigner
from gateway.protocols.sealing import Sealer

USAGE = Usage(100, 5)


def test_tool_use_is_the_stop_reason_only_with_a_tool_use_block() -> None:
    assert stop_reason(FinishEvent("tool_calls", USAGE), tool_uses=1) == "tool_use"
    assert stop_reason(FinishEvent("tool_calls", USAGE), tool_uses=0) == "end_turn"
    assert stop_reason(FinishEvent("length", USAGE), tool_uses=1) == "max_tokens"
    assert stop_reason(FinishEvent("stop", USAGE, "END"), tool_uses=0) == "stop_sequence"
    assert stop_reason(FinishEvent("stop", USAGE), tool_uses=0) == "end_turn"


def test_usage_splits_the_prompt_into_uncached_and_cache_read_tokens() -> None:
    assert usage_json(100, 64, 5) == {
        "input_tokens": 36,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 64,
        "output_tokens": 5,
    }
    assert usage_json(100, None, 5)["input_tokens"] == 100
    assert usage_json(10, 64, 0)["cache_read_input_tokens"] == 10  # never more than the prompt


def test_tool_use_ids_give_the_template_back_the_models_call_ids() -> None:
    assert tool_use_id("call_0123abcd") == "toolu_0123abcd"
    assert call_id_of_tool_use(tool_use_id("aB3dE6gH9")) == "aB3dE6gH9"  # Mistral's nine characters survive
    assert tool_use_id(None).startswith("toolu_")


def test_signatures_are_per_key_and_per_text() -> None:
    signer = ThinkingSigner(Sealer("key-one-0123456789"))
    signature = signer.sign("Let me think.")
    assert signer.verify("Let me think.", signature)
    assert not signer.verify("Let me think!", signature)
    assert not ThinkingSigner(Sealer("key-two-0123456789")).verify("Let me think.", signature)
    assert not signer.verify("Let me think.", signature + "x")
    assert not signer.verify("Let me think.", "ünïcode")
