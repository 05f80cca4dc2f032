"""Stored responses and conversations through the real Triton and real gateway processes, with unmodified clients:
the openai SDK, the Agents SDK; SQLite across a restart, two gateways on one real PostgreSQL (turns alternating,
a cancel crossing replicas, kill -9 of the replica running a background response), another key's 404."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from gateway.devstack import DevStackOptions, TritonServer, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway
from tests.postgres_server import available, postgres_server

KEY_A, KEY_B = "key-a", "key-b"


@pytest.fixture(scope="module")
def triton() -> Iterator[TritonServer]:
    """Triton with the synthetic engine: tokens at a steady pace, as long as asked (10 ms apart)."""
    with dev_triton(DevStackOptions(engine="synthetic", synthetic_itl_ms=10.0, synthetic_ttft_ms=20.0)) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway with two API keys and its SQLite store."""
    process = start_gateway(triton, tmp_path_factory.mktemp("state-gateway"), "--api-keys", f"{KEY_A},{KEY_B}")
    yield process
    stop_gateway(process)


@pytest.fixture(scope="module")
def scripted_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway over the scripted engine, whose answers end by themselves (what the Agents SDK needs)."""
    with dev_triton(DevStackOptions(engine="scripted", synthetic_itl_ms=1.0)) as server:
        process = start_gateway(server, tmp_path_factory.mktemp("scripted-gateway"), "--api-keys", KEY_A)
        yield process
        stop_gateway(process)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server of this module."""
    if not available():
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    with postgres_server() as url:
        yield url


def client(gateway: GatewayProcess, key: str = KEY_A) -> OpenAI:
    return OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=60)


def wait_for_status(
    sdk: OpenAI, response_id: str, statuses: set[str], timeout_s: float = 30
) -> openai.types.responses.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = sdk.responses.retrieve(response_id)
        if response.status in statuses or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_stored_responses_with_the_openai_sdk(gateway: GatewayProcess) -> None:
    sdk = client(gateway)
    first = sdk.responses.create(model=gateway.model, input="Hello there", max_output_tokens=8)
    assert first.status in ("completed", "incomplete") and first.store
    assert sdk.responses.retrieve(first.id).output_text == first.output_text
    second = sdk.responses.create(
        model=gateway.model, input="And again", previous_response_id=first.id, max_output_tokens=8
    )
    assert second.previous_response_id == first.id
    items = list(sdk.responses.input_items.list(second.id, order="asc"))
    assert [item.type for item in items] == ["message", "message", "message"]
    assert items[1].id == first.output[0].id and items[2].content[0].text == "And again"
    events = list(
        sdk.responses.create(
            model=gateway.model, input="Third", previous_response_id=second.id, max_output_tokens=8, stream=True
        )
    )
    third = events[-1].response  # response.incomplete: the synthetic engine writes until max_output_tokens
    assert len(list(sdk.responses.input_items.list(third.id))) == 5
    assert sdk.responses.retrieve(third.id).output_text == third.output_text
    with pytest.raises(openai.NotFoundError):
        client(gateway, KEY_B).responses.retrieve(third.id)
    with pytest.raises(openai.BadRequestError) as not_theirs:
        client(gateway, KEY_B).responses.create(
            model=gateway.model, input="x", previous_response_id=third.id, max_output_tokens=4
        )
    assert not_theirs.value.body["code"] == "previous_response_not_found"
    sdk.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(first.id)
    unstored = sdk.responses.create(model=gateway.model, input="x", store=False, max_output_tokens=4)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(unstored.id)


def test_conversations_with_the_openai_sdk(gateway: GatewayProcess) -> None:
    sdk = client(gateway)
    conversation = sdk.conversations.create(items=[{"role": "user", "content": "Hi"}], metadata={"topic": "test"})
    for text in ("First", "Second"):
        response = sdk.responses.create(
            model=gateway.model, input=text, conversation=conversation.id, max_output_tokens=6
        )
        assert response.conversation is not None and response.conversation.id == conversation.id
    items = list(sdk.conversations.items.list(conversation.id, order="asc"))
    assert [getattr(item, "role", None) for item in items] == ["user", "user", "assistant", "user", "assistant"]
    added = sdk.conversations.items.create(conversation.id, items=[{"role": "user", "content": "More"}])
    assert sdk.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id).id == added.data[0].id
    sdk.conversations.items.delete(added.data[0].id, conversation_id=conversation.id)
    assert sdk.conversations.update(conversation.id, metadata={"topic": "done"}).metadata == {"topic": "done"}
    with pytest.raises(openai.NotFoundError):
        client(gateway, KEY_B).conversations.retrieve(conversation.id)
    assert sdk.conversations.delete(conversation.id).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.conversations.retrieve(conversation.id)


def test_background_responses_run_replay_and_cancel(gateway: GatewayProcess) -> None:
    sdk = client(gateway)
    short = sdk.responses.create(model=gateway.model, input="Go", background=True, max_output_tokens=20)
    assert short.status == "queued" and short.background
    done = wait_for_status(sdk, short.id, {"completed", "incomplete"})
    assert done.output_text
    events = list(sdk.responses.retrieve(short.id, stream=True, starting_after=1))
    numbers = [event.sequence_number for event in events]
    assert numbers[0] == 2 and numbers == sorted(numbers) and events[-1].type == "response.incomplete"
    long = sdk.responses.create(model=gateway.model, input="Go on", background=True, max_output_tokens=3000)
    wait_for_status(sdk, long.id, {"in_progress"})
    time.sleep(0.5)
    cancelled = sdk.responses.cancel(long.id)
    assert cancelled.status == "cancelled"
    written = len(sdk.responses.retrieve(long.id).output_text)
    time.sleep(1.0)
    after = sdk.responses.retrieve(long.id)
    assert after.status == "cancelled" and len(after.output_text) == written < 3000
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model=gateway.model, input="x", background=True, store=False)


def test_the_agents_sdk_continues_by_previous_response_id_and_in_a_conversation_session(
    scripted_gateway: GatewayProcess,
) -> None:
    from agents import Agent, OpenAIConversationsSession, OpenAIResponsesModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)
    gateway = scripted_gateway
    sdk = openai.AsyncOpenAI(base_url=gateway.v1, api_key=KEY_A, max_retries=0)
    model = OpenAIResponsesModel(model=gateway.model, openai_client=sdk)
    agent = Agent(name="assistant", instructions="<<script>>Noted.<</script>>", model=model)

    async def conversation() -> None:
        first = await Runner.run(agent, "Hello")
        second = await Runner.run(agent, "And then?", previous_response_id=first.last_response_id)
        assert second.last_response_id != first.last_response_id
        stored = await sdk.responses.retrieve(second.last_response_id or "")
        assert stored.previous_response_id == first.last_response_id
        session = OpenAIConversationsSession(openai_client=sdk)
        await Runner.run(agent, "One", session=session)
        await Runner.run(agent, "Two", session=session)
        items = await session.get_items()
        users = [item["content"] for item in items if item.get("role") == "user"]
        assert users[-2:] in (
            ["One", "Two"],
            [[{"type": "input_text", "text": "One"}], [{"type": "input_text", "text": "Two"}]],
        )
        assert len(items) >= 4
        await sdk.close()

    asyncio.run(conversation())


def test_a_stored_response_survives_a_restart(triton: TritonServer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = start_gateway(triton, tmp_path, "--state-dir", str(state))
    try:
        response = client(first).responses.create(model=first.model, input="Keep me", max_output_tokens=6)
    finally:
        stop_gateway(first)
    second = start_gateway(triton, tmp_path, "--state-dir", str(state))
    try:
        assert client(second).responses.retrieve(response.id).output_text == response.output_text
    finally:
        stop_gateway(second)


def test_two_gateways_on_one_postgres_share_conversations_and_background_runs(
    triton: TritonServer, postgres_url: str, tmp_path: Path
) -> None:
    common = ("--store-url", postgres_url, "--background-lease-s", "2")
    gateways = [start_gateway(triton, tmp_path, *common) for _ in range(2)]
    try:
        one, two = (client(g) for g in gateways)
        conversation = one.conversations.create()
        previous = None
        for turn in range(4):
            sdk = (one, two)[turn % 2]
            response = sdk.responses.create(
                model=gateways[0].model, input=f"Turn {turn}", conversation=conversation.id, max_output_tokens=4
            )
            chained = (two, one)[turn % 2].responses.create(
                model=gateways[0].model,
                input="Aside",
                previous_response_id=previous or response.id,
                max_output_tokens=4,
            )
            previous = chained.id
        texts = [item.content[0].text for item in two.conversations.items.list(conversation.id, order="asc", limit=100)]
        assert texts[0::2] == [f"Turn {turn}" for turn in range(4)]
        assert len(list(one.responses.input_items.list(previous, limit=100))) == 2 * 4 + 1

        running = one.responses.create(model=gateways[0].model, input="Go", background=True, max_output_tokens=3000)
        wait_for_status(two, running.id, {"in_progress"})
        started = time.monotonic()
        assert two.responses.cancel(running.id).status == "cancelled"
        assert time.monotonic() - started < 2.5  # the running replica learnt of it within about a second

        orphan = one.responses.create(model=gateways[0].model, input="Go", background=True, max_output_tokens=3000)
        wait_for_status(two, orphan.id, {"in_progress"})
        os.kill(gateways[0].process.pid, signal.SIGKILL)
        gateways[0].process.wait()
        failed = wait_for_status(two, orphan.id, {"failed"}, timeout_s=20)
        assert failed.status == "failed" and failed.error is not None and failed.error.code == "server_error"
    finally:
        for gateway in gateways:
            if gateway.process.poll() is None:
                stop_gateway(gateway)
