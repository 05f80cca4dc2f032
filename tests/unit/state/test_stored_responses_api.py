"""POST /v1/responses with the store, in-process over the fake engine and a SQLite store: saved responses,
previous_response_id, conversation, retrieve, delete, input_items, background runs, cancel, ownership."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI

from gateway.api.background import BackgroundRunner
from gateway.config import Settings
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.state import Store, StoreConfig, open_store
from tests.unit.fake_engine import FakeEngine

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


@pytest.fixture
def settings() -> Settings:
    return Settings(api_keys="key-a,key-b")


@pytest.fixture
async def store(tmp_path: Path, app: FastAPI) -> AsyncIterator[Store]:
    opened = await open_store(StoreConfig(url=f"sqlite://{tmp_path / 'store.sqlite3'}"))
    runner = BackgroundRunner(opened, lease_s=2.0)
    runner.start()
    app.state.store, app.state.background = opened, runner
    try:
        yield opened
    finally:
        await runner.drain(5.0)
        await opened.close()


async def create(client: httpx.AsyncClient, headers: dict[str, str] = A, **fields: object) -> dict:
    answer = await client.post("/v1/responses", json={"model": DEV_MODEL_NAME, **fields}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_stored_response_is_retrieved_continued_listed_and_deleted(
    client: httpx.AsyncClient, store: Store, fake_engine: FakeEngine
) -> None:
    first = await create(client, input="Say hello")
    assert first["status"] == "completed" and first["store"] is True
    read = await client.get(f"/v1/responses/{first['id']}", headers=A)
    assert read.json() == first
    second = await create(client, input="Again", previous_response_id=first["id"])
    assert second["previous_response_id"] == first["id"]
    prompt = fake_engine.requests[-1].prompt
    assert isinstance(prompt, str) and prompt.index("Say hello") < prompt.index("Hello world!") < prompt.index("Again")
    items = (await client.get(f"/v1/responses/{second['id']}/input_items", params={"order": "asc"}, headers=A)).json()
    kinds = [(item["type"], item.get("role")) for item in items["data"]]
    assert kinds == [("message", "user"), ("message", "assistant"), ("message", "user")]
    assert items["data"][1]["id"] == first["output"][0]["id"]
    newest = (await client.get(f"/v1/responses/{second['id']}/input_items", params={"limit": 1}, headers=A)).json()
    assert newest["has_more"] and newest["data"][0]["content"][0]["text"] == "Again"
    deleted = await client.delete(f"/v1/responses/{first['id']}", headers=A)
    assert deleted.json() == {"id": first["id"], "object": "response.deleted", "deleted": True}
    assert (await client.get(f"/v1/responses/{first['id']}", headers=A)).status_code == 404


async def test_a_streamed_response_is_stored_before_its_last_event(client: httpx.AsyncClient, store: Store) -> None:
    body = {"model": DEV_MODEL_NAME, "input": "hi", "stream": True}
    async with client.stream("POST", "/v1/responses", json=body, headers=A) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:") and '"response.completed"' in line:
                response_id = orjson.loads(line[5:])["response"]["id"]
                assert (await store.responses.get(response_id, "key:" + _digest("key-a"))) is not None
    stored = (await client.get(f"/v1/responses/{response_id}", headers=A)).json()
    assert stored["status"] == "completed" and stored["output"][0]["content"][0]["text"] == "Hello world!"


def _digest(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


async def test_store_false_keeps_nothing(client: httpx.AsyncClient, store: Store) -> None:
    response = await create(client, input="hi", store=False)
    assert (await client.get(f"/v1/responses/{response['id']}", headers=A)).status_code == 404


async def test_another_keys_response_is_a_404_everywhere(client: httpx.AsyncClient, store: Store) -> None:
    mine = await create(client, input="secret")
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("GET", "/input_items")):
        answer = await client.request(method, f"/v1/responses/{mine['id']}{path}", headers=B)
        assert answer.status_code == 404, (method, path)
        assert answer.json()["error"]["param"] == "response_id"
    refused = await client.post(
        "/v1/responses", json={"model": DEV_MODEL_NAME, "input": "x", "previous_response_id": mine["id"]}, headers=B
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "previous_response_not_found"
    unknown = await client.post(
        "/v1/responses", json={"model": DEV_MODEL_NAME, "input": "x", "previous_response_id": "resp_nope"}, headers=B
    )
    assert refused.json()["error"]["message"].replace(mine["id"], "resp_nope") == unknown.json()["error"]["message"]
    assert (await client.get(f"/v1/responses/{mine['id']}", headers=A)).status_code == 200


@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"background": True, "store": False}, 400, "background"),
        ({"previous_response_id": "resp_x", "conversation": "conv_x"}, 400, "conversation"),
        ({"previous_response_id": "resp_nope"}, 400, "previous_response_id"),
        ({"conversation": "conv_nope"}, 404, "conversation"),
        ({"conversation": {"name": "x"}}, 400, "conversation"),
    ],
)
async def test_stateful_fields_that_cannot_be_honoured_are_refused_naming_the_field(
    client: httpx.AsyncClient, store: Store, fields: dict[str, object], status: int, param: str
) -> None:
    answer = await client.post("/v1/responses", json={"model": DEV_MODEL_NAME, "input": "x", **fields}, headers=A)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["param"] == param


async def test_a_conversation_gathers_each_turns_input_and_output(
    client: httpx.AsyncClient, store: Store, fake_engine: FakeEngine
) -> None:
    conversation = (
        await client.post("/v1/conversations", json={"items": [{"role": "user", "content": "a"}]}, headers=A)
    ).json()
    first = await create(client, input="b", conversation=conversation["id"])
    assert first["conversation"] == {"id": conversation["id"]}
    await create(client, input="c", conversation={"id": conversation["id"]})
    prompt = fake_engine.requests[-1].prompt
    assert isinstance(prompt, str) and prompt.count("Hello world!") == 1
    items = (
        await client.get(f"/v1/conversations/{conversation['id']}/items", params={"order": "asc"}, headers=A)
    ).json()
    texts = [item["content"][0]["text"] for item in items["data"]]
    assert texts == ["a", "b", "Hello world!", "c", "Hello world!"]


async def test_a_background_response_runs_without_its_client_and_replays_its_events(
    client: httpx.AsyncClient, store: Store, fake_engine: FakeEngine
) -> None:
    fake_engine.delay_s = 0.05
    queued = await create(client, input="hi", background=True)
    assert queued["status"] == "queued" and queued["background"] is True
    for _ in range(100):
        current = (await client.get(f"/v1/responses/{queued['id']}", headers=A)).json()
        if current["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert current["output"][0]["content"][0]["text"] == "Hello world!"
    replayed = await client.get(
        f"/v1/responses/{queued['id']}", params={"stream": "true", "starting_after": 2}, headers=A
    )
    events = [orjson.loads(line[5:]) for line in replayed.text.splitlines() if line.startswith("data:")]
    numbers = [event["sequence_number"] for event in events]
    assert numbers[0] == 3 and numbers == sorted(numbers) and events[-1]["type"] == "response.completed"


async def test_cancelling_a_background_response_stops_its_generation(
    client: httpx.AsyncClient, store: Store, fake_engine: FakeEngine
) -> None:
    fake_engine.delay_s = 0.5
    fake_engine.pieces = ["x"] * 100
    queued = await create(client, input="hi", background=True)
    await asyncio.sleep(0.3)
    cancelled = await client.post(f"/v1/responses/{queued['id']}/cancel", headers=A)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert fake_engine.closed_early == [queued["id"]]
    again = await client.post(f"/v1/responses/{queued['id']}/cancel", headers=A)
    assert again.json()["status"] == "cancelled"
    plain = await create(client, input="hi")
    refused = await client.post(f"/v1/responses/{plain['id']}/cancel", headers=A)
    assert refused.status_code == 400


async def test_a_run_whose_replica_stopped_is_marked_failed_by_another(store: Store) -> None:
    from gateway.state import ResponseRecord

    body = orjson.dumps({"id": "resp_lost", "object": "response", "status": "in_progress", "output": []})
    record = ResponseRecord("resp_lost", "anonymous", 1.0, "in_progress", body, b"[]", background=True)
    await store.runs.start(record, "a-dead-replica", lease_until=0.0)
    other = BackgroundRunner(store, lease_s=2.0)
    assert await other.take_over_expired() == 1
    lost = await store.responses.get("resp_lost", "anonymous")
    assert lost is not None and lost.status == "failed"
    assert orjson.loads(lost.body)["error"]["code"] == "server_error"
    events = await store.responses.events_after("resp_lost", -1)
    assert [e.name for e in events] == ["response.failed"]
    assert await other.take_over_expired() == 0


async def test_every_turn_of_a_conversation_routes_by_its_stable_id(
    client: httpx.AsyncClient, store: Store, fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.telemetry import current_request

    sessions: list[str | None] = []
    generate = fake_engine.generate

    def recording(request):  # type: ignore[no-untyped-def]
        context = current_request()
        sessions.append(context.session if context is not None else None)
        return generate(request)

    monkeypatch.setattr(fake_engine, "generate", recording)
    first = await create(client, input="one")
    second = await create(client, input="two", previous_response_id=first["id"])
    await create(client, input="three", previous_response_id=second["id"])
    conversation = (await client.post("/v1/conversations", json={}, headers=A)).json()
    await create(client, input="four", conversation=conversation["id"])
    await create(client, input="five", prompt_cache_key="my-key")
    assert sessions == [None, first["id"], first["id"], conversation["id"], "my-key"]


async def test_at_shutdown_background_runs_get_the_drain_time_then_fail(
    client: httpx.AsyncClient, store: Store, fake_engine: FakeEngine, app: FastAPI
) -> None:
    fake_engine.delay_s = 0.1
    quick = await create(client, input="hi", background=True)
    await app.state.background.drain(5.0)
    done = await store.responses.load(quick["id"])
    assert done is not None and done.status == "completed"
    fake_engine.pieces = ["x"] * 1000
    slow = await create(client, input="hi", background=True)
    await asyncio.sleep(0.3)
    await app.state.background.drain(0.2)
    ended = await store.responses.load(slow["id"])
    assert ended is not None and ended.status == "failed"
    assert orjson.loads(ended.body)["error"]["message"].startswith("The server shut down")
    assert slow["id"] in fake_engine.closed_early
