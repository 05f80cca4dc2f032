"""Tenants across replicas: three gateway processes behind a real nginx share one real Redis for the keys' limits
and one real PostgreSQL as their store.

A key limited to 60 requests a minute gets exactly 60 of a burst of 200 spread over the three; 50 concurrent
streams stay within a tokens-per-minute limit and a token budget; the keys file changes under load without a
failed request; Redis killed under load and restarted gives the configured policy and no 5xx; each key sees and
uses only its models (chat, Responses and Messages); stored responses are their tenant's on every replica, and the
usage API adds up every replica's counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis
import yaml

from gateway.devstack import DevStackOptions, TritonServer, dev_triton, free_port
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway
from tests.e2e.redis_server import RedisServer, needs_redis, redis_server
from tests.e2e.test_rolling_restart import NGINX, nginx_config
from tests.postgres_server import available as postgres_available
from tests.postgres_server import postgres_server

pytestmark = [
    pytest.mark.e2e,
    needs_redis,
    pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx needed"),
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL needed (Debian package postgresql)"),
]

MODELS = ("dev-a", "dev-b")
KEYS: dict[str, dict[str, Any]] = {
    "burst": {"tenant": "burst", "models": ["*"], "limits": {"requests_per_minute": 60}},
    "tpm": {"tenant": "streams", "models": ["*"], "limits": {"tokens_per_minute": 700}},
    "budget": {"tenant": "budgets", "models": ["*"], "limits": {"tokens_per_day": 900}},
    "load": {"tenant": "load", "models": ["*"], "limits": {"requests_per_minute": 100000}},
    "reload": {"tenant": "reload", "models": ["*"], "limits": {"requests_per_minute": 20}},
    "only-a": {"tenant": "team-a", "models": ["dev-a-alias"]},
    "also-a": {"tenant": "team-a", "models": ["dev-a"]},
    "every": {"tenant": "team-b", "models": ["*"], "role": "admin"},
}
PROMPT = [{"role": "user", "content": "Hi"}]


def secret(name: str) -> str:
    return f"sk-e2e-{name}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(name)}"}


def key_id(name: str) -> str:
    return f"{name}-key"


def write_keys(path: Path, keys: dict[str, dict[str, Any]]) -> None:
    """Write the keys file atomically (a reader never sees half a file)."""
    entries = [
        {"sha256": hashlib.sha256(secret(name).encode()).hexdigest(), "id": key_id(name), **fields}
        for name, fields in keys.items()
    ]
    partial = path.with_suffix(".partial")
    partial.write_text(yaml.safe_dump({"keys": entries}))
    os.replace(partial, path)


@dataclass
class Fleet:
    """nginx on `url` in front of three gateways (limits closed on error), and one more gateway with `open`."""

    url: str
    gateways: list[GatewayProcess]
    open_gateway: GatewayProcess
    keys_file: Path
    redis: RedisServer

    def counters(self) -> redis.Redis:
        """A client on the shared Redis (to read the counters the gateways keep)."""
        return redis.Redis(port=self.redis.port, decode_responses=True)


@pytest.fixture(scope="module")
def synthetic_triton() -> Iterator[TritonServer]:
    with dev_triton(DevStackOptions(engine="synthetic", synthetic_ttft_ms=20, synthetic_itl_ms=10)) as server:
        yield server


@pytest.fixture(scope="module")
def fleet(synthetic_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("tenants")
    models_file = folder / "models.yaml"
    models_file.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {"name": "dev-a", "aliases": ["dev-a-alias"], "tokenizer": str(synthetic_triton.model_dir),
                     "upstreams": [synthetic_triton.grpc_url]},
                    {"name": "dev-b", "tokenizer": str(synthetic_triton.model_dir),
                     "upstreams": [synthetic_triton.grpc_url]},
                ]
            }
        )
    )  # fmt: skip
    keys_file = folder / "keys.yaml"
    write_keys(keys_file, KEYS)
    with redis_server(folder) as shared, postgres_server() as store_url:
        common = ["--keys-file", str(keys_file), "--limits-url", shared.url, "--store-url", store_url]
        ports = [free_port() for _ in range(3)]
        gateways = [
            start_gateway(None, folder, *common, "--limits-on-error", "closed", models_file=models_file, port=port)
            for port in ports
        ]
        open_gateway = start_gateway(None, folder, *common, "--limits-on-error", "open", models_file=models_file)
        port = free_port()
        (folder / "nginx.conf").write_text(nginx_config(folder, port, [f"127.0.0.1:{p}" for p in ports]))
        nginx = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"])
        try:
            deadline = time.monotonic() + 10
            while not (folder / "nginx.pid").exists():
                assert nginx.poll() is None and time.monotonic() < deadline, (folder / "error.log").read_text()
                time.sleep(0.05)
            yield Fleet(f"http://127.0.0.1:{port}", gateways, open_gateway, keys_file, shared)
        finally:
            nginx.terminate()
            nginx.wait(10)
            for gateway in [*gateways, open_gateway]:
                stop_gateway(gateway)


def tenant_requests(gateway: GatewayProcess, tenant: str) -> float:
    """What one gateway's /metrics counts for a tenant's admitted requests."""
    total = 0.0
    for line in httpx.get(f"{gateway.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("gateway_tenant_requests_total{") and f'tenant="{tenant}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_burst_over_three_replicas_gets_exactly_the_limit(fleet: Fleet) -> None:
    body = {"model": "dev-a", "messages": PROMPT, "max_tokens": 2}
    gate = asyncio.Semaphore(24)

    async def one(http: httpx.AsyncClient) -> httpx.Response:
        async with gate:
            return await http.post("/v1/chat/completions", json=body, headers=auth("burst"))

    async with httpx.AsyncClient(base_url=fleet.url, timeout=60) as http:
        answers = await asyncio.gather(*(one(http) for _ in range(200)))
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {200: 60, 429: 140}, statuses
    admitted = [answer for answer in answers if answer.status_code == 200]
    # Every admission saw its own count: the 60 remaining values are 59, 58, ... 0, whichever replica answered.
    assert sorted(int(a.headers["x-ratelimit-remaining-requests"]) for a in admitted) == list(range(60))
    for refused in (answer for answer in answers if answer.status_code == 429):
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
        assert refused.headers["x-ratelimit-limit-requests"] == "60"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert 1 <= int(refused.headers["retry-after"]) <= 60 and refused.headers["x-ratelimit-reset-requests"]
        assert secret("burst") not in refused.text
    shares = [tenant_requests(gateway, "burst") for gateway in fleet.gateways]
    assert sum(shares) == 60 and all(share > 0 for share in shares), shares  # spread over the three


async def stream(http: httpx.AsyncClient, key: str, max_tokens: int, leave_early: bool) -> tuple[int, int, str]:
    """(status, tokens the final usage reports, error type); a client that leaves early reads one event."""
    body = {"model": "dev-b", "messages": PROMPT, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=auth(key)) as reply:
        if reply.status_code != 200:
            await reply.aread()
            return reply.status_code, 0, reply.json()["error"]["type"]
        used = 0
        async for line in reply.aiter_lines():
            if leave_early and line.startswith("data: {"):
                return 200, -1, ""
            if line.startswith("data: {") and '"usage":{' in line:
                usage = httpx.Response(200, content=line[6:]).json()["usage"]
                used = usage["prompt_tokens"] + usage["completion_tokens"]
        return 200, used, ""


@pytest.mark.parametrize(("key", "limit", "counter", "refusal"), [
    ("tpm", 700, "tv", "tokens"),
    ("budget", 900, "day", "insufficient_quota"),
])  # fmt: skip
async def test_fifty_concurrent_streams_stay_within_the_limit(
    fleet: Fleet, key: str, limit: int, counter: str, refusal: str
) -> None:
    """Each stream reserves its prompt and 60 tokens, so about a dozen fit; every tenth leaves after its first
    event. What is charged never exceeds the limit (the bound: the engine's prompt count over the gateway's,
    zero here, both count with the same tokenizer), and equals what the finished streams used plus what the
    abandoned ones received."""
    async with httpx.AsyncClient(base_url=fleet.url, timeout=60) as http:
        results = await asyncio.gather(*(stream(http, key, 60, i % 10 == 0) for i in range(50)))
    await asyncio.sleep(0.5)  # the settlements run once each response has ended
    statuses = Counter(status for status, _, _ in results)
    assert set(statuses) == {200, 429} and statuses[200] >= 5, statuses
    assert {kind for status, _, kind in results if status == 429} == {refusal}
    finished = sum(used for status, used, _ in results if status == 200 and used > 0)
    assert finished > 0
    day = time.strftime("%Y%m%d", time.gmtime())
    redis_key = f"tg:lim:{{{key_id(key)}}}:" + ("tv" if counter == "tv" else "d" + day)
    with fleet.counters() as client:
        charged = int(client.hget(redis_key, "=total") if counter == "tv" else client.get(redis_key))
    assert finished <= charged <= limit, (finished, charged)
    early = [used for status, used, _ in results if status == 200 and used < 0]
    if not early:
        assert charged == finished


def test_a_changed_keys_file_applies_under_load_without_a_failure(fleet: Fleet) -> None:
    """Load on a key limited to 20 a minute; the file raises its limit, adds a key and revokes another."""
    outcomes: list[tuple[float, int]] = []
    stop = threading.Event()

    def client() -> None:
        body = {"model": "dev-a", "messages": PROMPT, "max_tokens": 2}
        with httpx.Client(base_url=fleet.url, timeout=60) as http:
            while not stop.is_set():
                answer = http.post("/v1/chat/completions", json=body, headers=auth("reload"))
                outcomes.append((time.monotonic(), answer.status_code))
                time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(3)
        assert any(status == 429 for _, status in outcomes)  # the old limit applies
        changed = dict(KEYS)
        changed["reload"] = {**KEYS["reload"], "limits": {"requests_per_minute": 100000}}
        changed["new"] = {"tenant": "newcomer", "models": ["dev-b"]}
        del changed["only-a"]
        write_keys(fleet.keys_file, changed)
        reloaded_at = time.monotonic()
        time.sleep(6)  # the gateways look at the file every 2 s
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        write_keys(fleet.keys_file, KEYS | {"new": {"tenant": "newcomer", "models": ["dev-b"]}})
    assert {status for _, status in outcomes} <= {200, 429}  # nothing failed
    after = [status for at, status in outcomes if at > reloaded_at + 3]
    assert after and set(after) == {200}  # the new limit applies on every replica
    for gateway in fleet.gateways:
        new_key = httpx.post(f"{gateway.url}/v1/chat/completions", headers=auth("new"), timeout=60,
                             json={"model": "dev-b", "messages": PROMPT, "max_tokens": 2})  # fmt: skip
        assert new_key.status_code == 200
        assert "reloaded" in gateway.log() and secret("new") not in gateway.log()


def test_each_key_sees_and_uses_only_its_models(fleet: Fleet) -> None:
    time.sleep(3)  # the previous test's last write of the keys file is in force
    only_a = openai.OpenAI(base_url=f"{fleet.url}/v1", api_key=secret("only-a"), max_retries=0)
    every = openai.OpenAI(base_url=f"{fleet.url}/v1", api_key=secret("every"), max_retries=0)
    assert sorted(model.id for model in only_a.models.list()) == ["dev-a", "dev-a-alias"]
    assert sorted(model.id for model in every.models.list()) == ["dev-a", "dev-a-alias", "dev-b"]
    assert only_a.chat.completions.create(model="dev-a", messages=PROMPT, max_tokens=2).choices  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        only_a.chat.completions.create(model="dev-b", messages=PROMPT, max_tokens=2)  # type: ignore[arg-type]
    denied, unknown = (
        httpx.post(f"{fleet.url}/v1/chat/completions", headers=auth("only-a"), timeout=60,
                   json={"model": model, "messages": PROMPT, "max_tokens": 2})
        for model in ("dev-b", "dev-c")
    )  # fmt: skip
    assert denied.status_code == unknown.status_code == 404
    assert denied.json() == {"error": {**unknown.json()["error"], "message": unknown.json()["error"]["message"].replace(
        "dev-c", "dev-b")}}  # fmt: skip
    with pytest.raises(openai.NotFoundError):
        only_a.models.retrieve("dev-b")


def test_stored_responses_and_usage_are_the_tenants_on_every_replica(fleet: Fleet) -> None:
    also_a, only_a, every = (
        openai.OpenAI(base_url=f"{fleet.url}/v1", api_key=secret(name), max_retries=0)
        for name in ("also-a", "only-a", "every")
    )
    with pytest.raises(openai.NotFoundError):
        also_a.responses.create(model="dev-b", input="Hi", max_output_tokens=2)
    created = [also_a.responses.create(model="dev-a", input="Hi", max_output_tokens=3) for _ in range(4)]
    chats = [also_a.chat.completions.create(model="dev-a", messages=PROMPT, max_tokens=2) for _ in range(2)]  # type: ignore[arg-type]
    claude = anthropic.Anthropic(base_url=fleet.url, api_key=secret("also-a"), max_retries=0)
    message = claude.messages.create(model="dev-a", max_tokens=3, messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="dev-b", max_tokens=3, messages=[{"role": "user", "content": "Hi"}])
    for response in created:  # nginx spreads the reads over the replicas: team-a's keys see them, team-b's not
        assert only_a.responses.retrieve(response.id).id == response.id
        with pytest.raises(openai.NotFoundError):
            every.responses.retrieve(response.id)
    today = int(time.time() // 86400) * 86400
    url = f"{fleet.url}/v1/organization/usage/completions?start_time={today}&group_by=api_key_id&group_by=model"
    # Each replica adds its counts to the store every 10 s, and when it answers a usage read (nginx spreads them).
    deadline = time.monotonic() + 30
    while True:
        page = httpx.get(url, headers=auth("every"), timeout=30).json()
        rows = {(r["api_key_id"], r["model"]): r for r in page["data"][0]["results"]}
        row = rows.get((key_id("also-a"), "dev-a"))
        if (row is not None and row["num_model_requests"] >= 7) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert row is not None and row["num_model_requests"] == 7, row
    answered = [r.usage.output_tokens for r in created if r.usage] + [
        c.usage.completion_tokens for c in chats if c.usage
    ]
    answered.append(message.usage.output_tokens)
    assert len(answered) == 7 and row["output_tokens"] == sum(answered)
    assert secret("also-a") not in str(page)


@dataclass
class Load:
    """Requests in a loop from threads against one URL; statuses and error types by time."""

    url: str
    outcomes: list[tuple[float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self) -> None:
        body = {"model": "dev-a", "messages": PROMPT, "max_tokens": 4}
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.is_set():
                try:
                    answer = http.post("/v1/chat/completions", json=body, headers=auth("load"))
                    kind = answer.json().get("error", {}).get("type", "") if answer.status_code != 200 else ""
                    self.outcomes.append((time.monotonic(), answer.status_code, kind))
                except httpx.HTTPError as exc:
                    self.outcomes.append((time.monotonic(), 0, type(exc).__name__))
                time.sleep(0.02)


def test_redis_killed_under_load_then_restarted(fleet: Fleet) -> None:
    closed, opened = Load(fleet.url), Load(fleet.open_gateway.url)
    threads = [threading.Thread(target=load.client) for load in (closed, opened, closed, opened)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        fleet.redis.stop()
        down_at = time.monotonic()
        time.sleep(4)
        fleet.redis.start()
        up_at = time.monotonic()
        time.sleep(4)
    finally:
        closed.stop.set()
        opened.stop.set()
        for thread in threads:
            thread.join(60)
    for load in (closed, opened):
        assert not [o for o in load.outcomes if o[1] == 0 or o[1] >= 500], "a failure or a 5xx"
        assert [o for o in load.outcomes if o[0] > up_at + 2] and all(
            o[1] == 200 for o in load.outcomes if o[0] > up_at + 2
        ), "limits did not come back"
    during = [(status, kind) for at, status, kind in closed.outcomes if down_at + 1.5 < at < up_at]
    assert during and set(during) == {(429, "requests")}  # closed: refused while the limits cannot be checked
    assert {status for at, status, _ in opened.outcomes if down_at < at < up_at} == {200}  # open: admitted
    for gateway in [*fleet.gateways, fleet.open_gateway]:
        assert "limits backend (Redis) unreachable" in gateway.log()
