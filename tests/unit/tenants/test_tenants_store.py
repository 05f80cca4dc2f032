"""Tenants on the Responses API and the store: limits and model access on /v1/responses (background runs too),
stored objects owned by the tenant, usage kept in the store and added up across replicas."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.datastructures import State

from gateway.api.background import BackgroundRunner
from gateway.api.usage_ledger import StoreLedger
from gateway.config import Settings
from gateway.core.served_model import unknown_model
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.state import StoreConfig, open_store
from gateway.state.runs import BackgroundRuns
from gateway.tenants.usage import UsageCounts, UsageKey, UsageRecorder, day_of
from tests.unit.fake_engine import FakeEngine
from tests.unit.tenants.test_tenancy_api import (
    CHAT,
    KEYS,
    OTHER,
    auth,
    chat,
    secret,
    settled,
    two_models_app,
    write_keys,
)

RESPONSES = "/v1/responses"
MESSAGES = "/v1/messages"
TEAM_A_AGAIN = ("team-a", {"models": ["*"]})  # a second key of team-a's


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.yaml"
    write_keys(path, KEYS | {"dev2": TEAM_A_AGAIN})
    return path


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'store.sqlite3'}"


async def started(app: FastAPI, store_url: str) -> FastAPI:
    """The app with its store (a replica's own connection to the shared file) and background runner."""
    app.state.store = await open_store(StoreConfig(url=store_url))
    app.state.background = BackgroundRunner(app.state.store, lease_s=5.0)
    app.state.background.start()
    return app


async def stopped(app: FastAPI) -> None:
    """Stop as the lifespan would: background runs, then the tenants (the last usage flush), then the store."""
    await app.state.background.drain(5.0)
    await app.state.tenants.close()
    await app.state.store.close()


@pytest.fixture
async def replicas(
    fake_engine: FakeEngine, tokenizer: Any, keys_file: Path, store_url: str
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two gateways (apps) with the same keys file, sharing one store."""
    apps = [
        await started(two_models_app(fake_engine, tokenizer, Settings(keys_file=keys_file)), store_url)
        for _ in range(2)
    ]
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://gateway") for a in apps]
    try:
        yield clients
    finally:
        for client, app in zip(clients, apps, strict=True):
            await client.aclose()
            await stopped(app)


def respond(model: str = DEV_MODEL_NAME, **fields: Any) -> dict[str, Any]:
    return {"model": model, "input": "Hi", **fields}


async def usage(client: httpx.AsyncClient) -> dict[tuple[str, str], dict[str, Any]]:
    today = int(time.time() // 86400) * 86400
    url = f"/v1/organization/usage/completions?start_time={today}&group_by=api_key_id&group_by=model"
    page = (await client.get(url, headers=auth("admin"))).json()
    return {(r["api_key_id"], r["model"]): r for r in page["data"][0]["results"]}


async def test_responses_are_limited_and_filtered_like_chat(replicas: list[httpx.AsyncClient]) -> None:
    client = replicas[0]
    denied = await client.post(RESPONSES, json=respond(OTHER), headers=auth("dev"))
    assert denied.status_code == 404 and denied.json() == unknown_model(OTHER).to_body()
    background = await client.post(RESPONSES, json=respond(OTHER, background=True), headers=auth("dev"))
    assert background.status_code == 404
    counted = await client.post(f"{RESPONSES}/input_tokens", json=respond(OTHER), headers=auth("dev"))
    assert counted.status_code == 404
    # One requests-per-minute window for every generation route of the key.
    first = await client.post(RESPONSES, json=respond(), headers=auth("rpm"))
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "1"
    assert (await client.post(CHAT, json=chat(), headers=auth("rpm"))).status_code == 200
    refused = await client.post(RESPONSES, json=respond(), headers=auth("rpm"))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    refused_background = await client.post(RESPONSES, json=respond(background=True), headers=auth("rpm"))
    assert refused_background.status_code == 429


async def test_a_background_response_is_settled_and_counted_when_it_ends(
    replicas: list[httpx.AsyncClient], fake_engine: FakeEngine
) -> None:
    client = replicas[0]
    fake_engine.delay_s = 0.02
    # Each reserves its prompt and 60 tokens of the minute's 100: without the return when it ends, the second is
    # refused.
    for _ in range(3):
        queued = await client.post(RESPONSES, json=respond(background=True, max_output_tokens=60), headers=auth("tpm"))
        assert queued.status_code == 200, queued.text
        assert queued.json()["status"] == "queued" and queued.headers["x-ratelimit-limit-tokens"] == "100"
        for _ in range(200):
            stored = (await client.get(f"{RESPONSES}/{queued.json()['id']}", headers=auth("tpm"))).json()
            if stored["status"] == "completed":
                break
            await asyncio.sleep(0.01)
        assert stored["status"] == "completed"
        await settled()
    row = (await usage(client))[("tpm-key", DEV_MODEL_NAME)]
    assert row["num_model_requests"] == 3 and row["output_tokens"] == 3 * stored["usage"]["output_tokens"]
    assert row["input_tokens"] == 3 * stored["usage"]["input_tokens"]


async def test_stored_objects_belong_to_the_tenant(replicas: list[httpx.AsyncClient]) -> None:
    one, two = replicas
    created = await one.post(RESPONSES, json=respond(), headers=auth("dev"))
    response_id = created.json()["id"]
    assert (await two.get(f"{RESPONSES}/{response_id}", headers=auth("dev2"))).status_code == 200  # team-a's
    assert (await two.get(f"{RESPONSES}/{response_id}", headers=auth("every"))).status_code == 404  # team-b
    continued = respond(previous_response_id=response_id)
    assert (await one.post(RESPONSES, json=continued, headers=auth("every"))).status_code == 400
    assert (await one.post(RESPONSES, json=continued, headers=auth("dev2"))).status_code == 200
    conversation = (await two.post("/v1/conversations", json={}, headers=auth("dev2"))).json()
    assert (await one.get(f"/v1/conversations/{conversation['id']}", headers=auth("dev"))).status_code == 200
    assert (await one.get(f"/v1/conversations/{conversation['id']}", headers=auth("every"))).status_code == 404
    assert (await one.delete(f"{RESPONSES}/{response_id}", headers=auth("every"))).status_code == 404


async def test_usage_is_kept_in_the_store_and_adds_up_across_replicas(replicas: list[httpx.AsyncClient]) -> None:
    one, two = replicas
    for client, body, path in ((one, chat(), CHAT), (two, respond(), RESPONSES), (two, chat(), CHAT)):
        assert (await client.post(path, json=body, headers=auth("dev"))).status_code == 200
    await settled()
    # Each replica counts in memory; reading usage flushes only the reader's counts.
    assert (await usage(one))[("dev-key", DEV_MODEL_NAME)]["num_model_requests"] == 1
    assert (await usage(two))[("dev-key", DEV_MODEL_NAME)]["num_model_requests"] == 3
    assert (await usage(one))[("dev-key", DEV_MODEL_NAME)]["num_model_requests"] == 3


async def test_counts_wait_in_memory_while_the_store_is_away(store_url: str) -> None:
    app_state = State()
    recorder = UsageRecorder(StoreLedger(app_state))
    key = UsageKey(day_of(time.time()), "team-a", "dev-key", DEV_MODEL_NAME)
    recorder.record(key, prompt=10, cached=4, completion=3)
    await recorder.flush()  # no store yet (the app is starting): kept, logged, no error
    recorder.record(key, prompt=5, cached=0, completion=2)
    app_state.store = await open_store(StoreConfig(url=store_url))
    try:
        await recorder.close()  # the last flush writes both
        [(read_key, counts)] = await recorder.ledger.read(key.day, key.day + 86400)
        assert read_key == key and counts == UsageCounts(2, 15, 4, 5)
    finally:
        await app_state.store.close()


async def test_a_background_response_that_cannot_start_returns_its_reservation(
    replicas: list[httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = replicas[0]

    async def store_fails(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(BackgroundRuns, "start", store_fails)
    with pytest.raises(OSError):  # in-process the app's error reaches the client (a 500 over HTTP)
        await client.post(RESPONSES, json=respond(background=True), headers=auth("one"))
    monkeypatch.undo()
    await settled()
    # The key may run one request at a time: its slot came back.
    started_again = await client.post(RESPONSES, json=respond(background=True), headers=auth("one"))
    assert started_again.status_code == 200, started_again.text


def anthropic(name: str) -> dict[str, str]:
    return {"x-api-key": secret(name), "anthropic-version": "2023-06-01"}


async def test_messages_are_limited_filtered_and_counted_in_anthropics_shape(replicas: list[httpx.AsyncClient]) -> None:
    client = replicas[0]
    body = {"model": DEV_MODEL_NAME, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
    denied = await client.post(MESSAGES, json={**body, "model": OTHER}, headers=anthropic("dev"))
    assert denied.status_code == 404 and denied.json()["type"] == "error"
    assert denied.json()["error"]["type"] == "not_found_error"
    counted = await client.post(f"{MESSAGES}/count_tokens", json={**body, "model": OTHER}, headers=anthropic("dev"))
    assert counted.status_code == 404
    listed = (await client.get("/v1/models", headers=anthropic("dev"))).json()
    assert [card["id"] for card in listed["data"]] == [DEV_MODEL_NAME]
    for _ in range(2):
        answer = await client.post(MESSAGES, json=body, headers=anthropic("rpm"))
        assert answer.status_code == 200, answer.text
    refused = await client.post(MESSAGES, json=body, headers=anthropic("rpm"))
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0" and refused.headers["retry-after"]
    await settled()
    row = (await usage(client))[("rpm-key", DEV_MODEL_NAME)]
    assert row["num_model_requests"] == 2 and row["output_tokens"] > 0
