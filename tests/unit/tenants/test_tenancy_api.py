"""Keys, model access, limits and usage through the app (in-process, over the scripted engine)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from gateway.app import create_app
from gateway.config import Settings
from gateway.core.served_model import ModelRegistry, ServedModel, unknown_model
from gateway.core.tokens import ChatTemplate, TokenCounter
from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.engine.base import GenerationRequest
from gateway.engine.codecs import TextCodec
from gateway.engine.tensors import ModelInterface
from gateway.errors import UpstreamUnavailableError
from gateway.state import StoreConfig, open_store
from tests.unit.fake_engine import FakeEngine

OTHER = "other-model"
CHAT = "/v1/chat/completions"
KEYS = {  # name -> (tenant, entry fields)
    "dev": ("team-a", {"models": [DEV_MODEL_NAME]}),
    "every": ("team-b", {"models": ["*"], "priority": "high"}),
    "alias": ("team-c", {"models": ["other-alias"]}),
    "rpm": ("team-d", {"models": ["*"], "limits": {"requests_per_minute": 2}}),
    "tpm": ("team-e", {"models": ["*"], "limits": {"tokens_per_minute": 100}}),
    "budget": ("team-f", {"models": ["*"], "limits": {"tokens_per_day": 100}}),
    "one": ("team-g", {"models": ["*"], "limits": {"concurrent_requests": 1}}),
    "admin": ("ops", {"models": ["*"], "role": "admin"}),
    "old": ("team-h", {"models": ["*"], "expires": "2020-01-01T00:00:00Z"}),
    "low": ("team-i", {"models": ["*"], "priority": "low"}),
}


def secret(name: str) -> str:
    return f"sk-test-{name}"


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(name)}"}


def write_keys(path: Path, keys: dict[str, tuple[str, dict[str, Any]]]) -> None:
    entries = [
        {"tenant": tenant, "sha256": hashlib.sha256(secret(name).encode()).hexdigest(), "id": f"{name}-key", **fields}
        for name, (tenant, fields) in keys.items()
    ]
    path.write_text(yaml.safe_dump({"keys": entries}))


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.yaml"
    write_keys(path, KEYS)
    return path


@pytest.fixture
def settings(keys_file: Path) -> Settings:
    return Settings(keys_file=keys_file, max_concurrent_requests=1, max_queued_requests=8)


def two_models_app(engine: FakeEngine, tokenizer: Any, settings: Settings) -> FastAPI:
    def model(name: str) -> ServedModel:
        return ServedModel(name, engine, ChatTemplate(tokenizer), TokenCounter(tokenizer), 16, 1000)

    return create_app(ModelRegistry([model(DEV_MODEL_NAME), model(OTHER)], {"other-alias": OTHER}), settings)


@pytest.fixture
def app(fake_engine: FakeEngine, tokenizer: Any, settings: Settings) -> Iterator[FastAPI]:
    yield two_models_app(fake_engine, tokenizer, settings)


@pytest.fixture
async def client(app: FastAPI, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app, with a store of its own (its usage rows this test's alone)."""
    app.state.store = await open_store(StoreConfig(url=f"sqlite://{tmp_path / 'store.sqlite3'}"))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
            yield http
    finally:
        await app.state.store.close()


def chat(model: str = DEV_MODEL_NAME, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], **fields}


async def settled() -> None:
    """Let the settlement tasks that the ends of responses started run."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_unknown_and_expired_keys_get_401(client: httpx.AsyncClient) -> None:
    assert (await client.post(CHAT, json=chat())).status_code == 401
    assert (await client.post(CHAT, json=chat(), headers=auth("nobody"))).status_code == 401
    expired = await client.post(CHAT, json=chat(), headers=auth("old"))
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    assert "sk-test" not in expired.text


async def test_a_model_the_key_may_not_use_is_a_404_like_an_unknown_one(client: httpx.AsyncClient) -> None:
    denied = await client.post(CHAT, json=chat(OTHER), headers=auth("dev"))
    assert denied.status_code == 404
    assert denied.json() == unknown_model(OTHER).to_body()
    assert (await client.get(f"/v1/models/{OTHER}", headers=auth("dev"))).json() == unknown_model(OTHER).to_body()
    assert (await client.post(CHAT, json=chat(OTHER), headers=auth("every"))).status_code == 200
    # A key allowed an alias may use the model by any of its names.
    assert (await client.post(CHAT, json=chat(OTHER), headers=auth("alias"))).status_code == 200
    assert (await client.post(CHAT, json=chat(), headers=auth("alias"))).status_code == 404


async def test_models_list_only_the_keys_models(client: httpx.AsyncClient) -> None:
    async def listed(name: str) -> set[str]:
        return {card["id"] for card in (await client.get("/v1/models", headers=auth(name))).json()["data"]}

    assert await listed("dev") == {DEV_MODEL_NAME}
    assert await listed("alias") == {OTHER, "other-alias"}
    assert await listed("every") == {DEV_MODEL_NAME, OTHER, "other-alias"}


async def test_requests_per_minute_refused_with_openai_shape_and_headers(client: httpx.AsyncClient) -> None:
    first = await client.post(CHAT, json=chat(), headers=auth("rpm"))
    second = await client.post(CHAT, json=chat(), headers=auth("rpm"))
    assert [first.headers["x-ratelimit-remaining-requests"], second.headers["x-ratelimit-remaining-requests"]] == [
        "1",
        "0",
    ]
    assert first.headers["x-ratelimit-limit-requests"] == "2" and first.headers["x-ratelimit-reset-requests"]
    refused = await client.post(CHAT, json=chat(), headers=auth("rpm"))
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert "team-d" in error["message"] and "sk-test" not in refused.text
    assert 55 <= int(refused.headers["retry-after"]) <= 60 and int(refused.headers["retry-after-ms"]) > 0
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-tokens" not in refused.headers  # the key has no tokens limit


async def test_tokens_are_reserved_and_the_unused_part_returned(client: httpx.AsyncClient) -> None:
    too_large = await client.post(CHAT, json=chat(max_tokens=200), headers=auth("tpm"))
    assert too_large.status_code == 429 and too_large.json()["error"]["type"] == "tokens"
    assert "retry-after" not in too_large.headers  # it would never pass
    # Each reserves its prompt and 60 tokens, uses the prompt and 3: without the return, the second is refused.
    for _ in range(3):
        answer = await client.post(CHAT, json=chat(max_tokens=60), headers=auth("tpm"))
        assert answer.status_code == 200, answer.text
        assert int(answer.headers["x-ratelimit-remaining-tokens"]) < 100 - 60
        await settled()


async def test_a_stream_returns_its_unused_tokens_when_it_ends(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        async with client.stream("POST", CHAT, json=chat(max_tokens=60, stream=True), headers=auth("tpm")) as reply:
            assert reply.status_code == 200 and reply.headers["x-ratelimit-limit-tokens"] == "100"
            body = "".join([part async for part in reply.aiter_text()])
        assert body.endswith("data: [DONE]\n\n")
        await settled()


async def test_a_spent_budget_is_insufficient_quota(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        assert (await client.post(CHAT, json=chat(max_tokens=60), headers=auth("budget"))).status_code == 200
        await settled()
    # Used about 2 x 13; another 60-token reservation no longer fits the day's 100 once prompts are counted.
    answers = []
    for _ in range(4):
        answers.append(await client.post(CHAT, json=chat(max_tokens=60), headers=auth("budget")))
        await settled()
    refused = answers[-1]
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert int(refused.headers["retry-after"]) <= 86400


async def test_a_request_that_got_nothing_from_the_engine_is_charged_nothing(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.fail_with = UpstreamUnavailableError("down")
    for _ in range(5):  # 5 x (prompt + 60) reserved would overspend the day's 100 many times
        assert (await client.post(CHAT, json=chat(max_tokens=60), headers=auth("budget"))).status_code == 503
        await settled()
    fake_engine.fail_with = None
    assert (await client.post(CHAT, json=chat(max_tokens=60), headers=auth("budget"))).status_code == 200


async def test_concurrent_requests_beyond_the_keys_limit_are_refused(
    fake_engine: FakeEngine, tokenizer: Any, keys_file: Path
) -> None:
    fake_engine.delay_s = 0.05
    app = two_models_app(fake_engine, tokenizer, Settings(keys_file=keys_file))  # no global concurrency limit
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        running = asyncio.create_task(client.post(CHAT, json=chat(stream=True), headers=auth("one")))
        await asyncio.sleep(0.03)
        refused = await client.post(CHAT, json=chat(), headers=auth("one"))
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert (await running).status_code == 200
        await settled()
        assert (await client.post(CHAT, json=chat(), headers=auth("one"))).status_code == 200


async def test_queued_requests_go_by_priority(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    fake_engine.delay_s = 0.02
    order: list[str] = []

    async def send(name: str) -> None:
        answer = await client.post(CHAT, json=chat(), headers=auth(name))
        assert answer.status_code == 200
        order.append(name)

    first = asyncio.create_task(send("dev"))  # takes the only slot
    await asyncio.sleep(0.01)
    low = asyncio.create_task(send("low"))
    await asyncio.sleep(0.01)
    high = asyncio.create_task(send("every"))
    await asyncio.gather(first, low, high)
    assert order == ["dev", "every", "low"]
    priorities = [request.priority for request in fake_engine.requests]
    assert priorities == [None, 1.0, 0.0]  # normal sends nothing; high and low TensorRT-LLM's 1 and 0


async def test_usage_reads_per_key_and_model_for_admins_only(client: httpx.AsyncClient) -> None:
    for name, model in (("dev", DEV_MODEL_NAME), ("every", OTHER), ("every", OTHER)):
        assert (await client.post(CHAT, json=chat(model), headers=auth(name))).status_code == 200
    today = int(time.time() // 86400) * 86400
    url = f"/v1/organization/usage/completions?start_time={today}&group_by=api_key_id&group_by=model"
    assert (await client.get(url, headers=auth("dev"))).status_code == 403
    page = (await client.get(url, headers=auth("admin"))).json()
    assert page["object"] == "page" and page["has_more"] is False
    [bucket] = page["data"]
    assert (bucket["object"], bucket["start_time"], bucket["end_time"]) == ("bucket", today, today + 86400)
    results = {(r["api_key_id"], r["model"]): r for r in bucket["results"]}
    assert set(results) == {("dev-key", DEV_MODEL_NAME), ("every-key", OTHER)}
    every = results[("every-key", OTHER)]
    assert every["num_model_requests"] == 2 and every["output_tokens"] == 6 and every["input_tokens"] == 14
    assert every["object"] == "organization.usage.completions.result" and every["project_id"] is None
    by_tenant = await client.get(f"/v1/organization/usage/completions?start_time={today}&group_by[]=project_id",
                                 headers=auth("admin"))  # fmt: skip
    assert {r["project_id"]: r["num_model_requests"] for r in by_tenant.json()["data"][0]["results"]} == {
        "team-a": 1,
        "team-b": 2,
    }


async def test_usage_pages_and_refuses_what_it_cannot_answer(client: httpx.AsyncClient) -> None:
    week_ago = int(time.time() // 86400) * 86400 - 9 * 86400
    base = "/v1/organization/usage/completions"
    page = (await client.get(f"{base}?start_time={week_ago}&limit=3", headers=auth("admin"))).json()
    assert len(page["data"]) == 3 and page["has_more"] and page["next_page"] == f"page_{week_ago + 3 * 86400}"
    following = await client.get(
        f"{base}?start_time={week_ago}&limit=3&page={page['next_page']}", headers=auth("admin")
    )
    assert following.json()["data"][0]["start_time"] == week_ago + 3 * 86400
    for query, param in (
        ("", "start_time"),
        (f"start_time={week_ago}&bucket_width=1h", "bucket_width"),
        (f"start_time={week_ago}&group_by=user_id", "group_by"),
        (f"start_time={week_ago}&limit=32", "limit"),
        (f"start_time={week_ago}&page=nonsense", "page"),
        (f"start_time={week_ago}&user_ids=u1", "user_ids"),
    ):
        answer = await client.get(f"{base}?{query}", headers=auth("admin"))
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, query


async def test_a_changed_keys_file_is_put_in_force_and_a_bad_one_refused(
    app: FastAPI, client: httpx.AsyncClient, keys_file: Path
) -> None:
    tenants = app.state.tenants
    assert tenants.watcher is not None
    write_keys(keys_file, {"dev": KEYS["dev"], "new": ("team-z", {"models": ["*"]})})
    assert await tenants.watcher.reload()
    assert (await client.post(CHAT, json=chat(), headers=auth("new"))).status_code == 200
    assert (await client.post(CHAT, json=chat(), headers=auth("every"))).status_code == 401  # revoked
    keys_file.write_text("keys:\n  - tenant: broken\n    sha256: nope\n    models: ['*']\n")
    assert not await tenants.watcher.reload()
    assert (await client.post(CHAT, json=chat(), headers=auth("new"))).status_code == 200  # the last good keys
    reloads = app.state.metrics.exposition().decode()
    assert 'gateway_keys_reloads_total{result="error"} 1.0' in reloads
    assert 'gateway_keys_reloads_total{result="ok"} 1.0' in reloads


async def test_metrics_count_per_tenant_never_per_key(client: httpx.AsyncClient, app: FastAPI) -> None:
    assert (await client.post(CHAT, json=chat(), headers=auth("dev"))).status_code == 200
    for _ in range(3):
        await client.post(CHAT, json=chat(), headers=auth("rpm"))
    exposed = app.state.metrics.exposition().decode()
    assert f'gateway_tenant_requests_total{{model="{DEV_MODEL_NAME}",tenant="team-a"}} 1.0' in exposed
    assert 'gateway_tenant_refusals_total{limit="requests_per_minute",tenant="team-d"} 1.0' in exposed
    assert "sk-test" not in exposed and "dev-key" not in exposed


def test_the_priority_goes_to_a_model_that_declares_it() -> None:
    declared = ModelInterface("ensemble", {"text_input": "BYTES", "max_tokens": "INT32", "priority": "FP32"},
                              {"text_output": "BYTES"}, decoupled=True)  # fmt: skip
    undeclared = ModelInterface("ensemble", {"text_input": "BYTES", "max_tokens": "INT32"}, {"text_output": "BYTES"},
                                decoupled=True)  # fmt: skip
    request = GenerationRequest("r", "Hi", 8, stream=False, priority=1.0)
    message, _ = TextCodec(declared, mode="ensemble", cumulative=False).open(request)
    inputs = {tensor.name: raw for tensor, raw in zip(message.inputs, message.raw_input_contents, strict=True)}
    assert struct.unpack("<f", inputs["priority"]) == (1.0,)
    message, _ = TextCodec(undeclared, mode="ensemble", cumulative=False).open(request)
    assert "priority" not in {tensor.name for tensor in message.inputs}


async def test_sighup_reloads_the_keys_file(app: FastAPI, keys_file: Path) -> None:
    tenants = app.state.tenants
    tenants.watcher.poll_s = 3600  # only the signal can reload it within the test
    await tenants.start()
    try:
        write_keys(keys_file, {"new": ("team-z", {"models": ["*"]})})
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + 5
        while tenants.keys.find(secret("new").encode()) is None:
            assert time.monotonic() < deadline, "SIGHUP did not reload the keys file"
            await asyncio.sleep(0.02)
        assert tenants.keys.find(secret("dev").encode()) is None
    finally:
        await tenants.close()
