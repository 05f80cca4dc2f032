"""A fleet behind one endpoint: three real dev Tritons, two models with different tokenizers and templates served
at once from one models file, prefix affinity, stop requests to the right replica, and one Triton SIGKILLed
under load and restarted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from gateway.core.tokens import load_tokenizer
from gateway.devstack import DevStackOptions, TritonServer, dev_triton, free_port
from gateway.devstack.triton_server import TritonPorts
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway
from tests.e2e.test_stream_integrity import running_requests

pytestmark = pytest.mark.e2e

OPTIONS = DevStackOptions(engine="synthetic", synthetic_ttft_ms=5, synthetic_itl_ms=5, kv_block_size=16)
TEMPLATE_B = "{% for m in messages %}### {{ m.role }}:\n{{ m.content }}\n{% endfor %}### assistant:\n"
SYSTEM = "You are the fleet's test assistant. Answer briefly, politely and in plain words. " * 6


@dataclass
class Fleet:
    stack: contextlib.ExitStack
    ports: list[TritonPorts]
    tritons: list[TritonServer]
    gateway: GatewayProcess
    tokenizer_b: Path

    def address(self, index: int) -> str:
        return f"127.0.0.1:{self.ports[index].grpc}"


def make_tokenizer_b(dev_model: Path, folder: Path) -> Path:
    """The dev tokenizer with most of its merges dropped: the same ids (so the dev engine's output decodes), but
    another segmentation, so token counts differ; and another chat template."""
    target = folder / "tokenizer-b"
    target.mkdir()
    shutil.copy(dev_model / "tokenizer_config.json", target)
    spec = json.loads((dev_model / "tokenizer.json").read_text())
    spec["model"]["merges"] = spec["model"]["merges"][:600]
    (target / "tokenizer.json").write_text(json.dumps(spec))
    (folder / "template-b.jinja").write_text(TEMPLATE_B)
    return target


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("fleet")
    with contextlib.ExitStack() as stack:
        ports = [TritonPorts(grpc=free_port(), http=free_port(), metrics=free_port()) for _ in range(3)]
        with ThreadPoolExecutor(3) as starter:
            tritons = list(starter.map(lambda p: stack.enter_context(dev_triton(OPTIONS, ports=p)), ports))
        tokenizer_b = make_tokenizer_b(tritons[0].model_dir, folder)
        upstreams = json.dumps([f"127.0.0.1:{p.grpc}" for p in ports])
        models_file = folder / "models.yaml"
        models_file.write_text(
            "health: {interval_s: 0.5, eject_after_failures: 2, eject_base_s: 1, eject_max_s: 2}\n"
            "models:\n"
            f"  - name: fleet-a\n    tokenizer: {tritons[0].model_dir}\n    upstreams: {upstreams}\n"
            "    routing: {policy: prefix_affinity, block_size: 16}\n"
            f"  - name: fleet-b\n    aliases: [fleet-b-latest]\n    tokenizer: {tokenizer_b}\n"
            f"    chat_template: template-b.jinja\n    triton_model: tensorrt_llm\n    upstreams: {upstreams}\n"
        )
        gateway = start_gateway(None, folder, "--log-format", "json", models_file=models_file)
        stack.callback(stop_gateway, gateway)
        yield Fleet(stack, ports, tritons, gateway, tokenizer_b)


def upstreams_of(gateway: GatewayProcess, request_ids: set[str], limit_s: float = 5) -> dict[str, str]:
    """The upstream each request went to, from the gateway's JSON access lines."""
    deadline = time.monotonic() + limit_s
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        for line in gateway.log().splitlines():
            if line.startswith("{") and '"upstream"' in line:
                entry = json.loads(line)
                if entry.get("request_id") in request_ids and entry.get("upstream"):
                    found[entry["request_id"]] = entry["upstream"]
        if len(found) == len(request_ids):
            return found
        time.sleep(0.1)
    raise AssertionError(f"no access line for {sorted(request_ids - found.keys())}")


def metric(gateway: GatewayProcess, name: str, **labels: str) -> float:
    """The sum of a metric's samples matching `labels`."""
    total = 0.0
    for line in httpx.get(f"{gateway.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_models_each_with_its_own_tokenizer_and_template(fleet: Fleet) -> None:
    client = openai.OpenAI(base_url=fleet.gateway.v1, api_key="unused")
    assert sorted(m.id for m in client.models.list()) == ["fleet-a", "fleet-b", "fleet-b-latest"]
    messages = [{"role": "user", "content": "Tell me about the weather in the mountains today, and tomorrow."}]
    counts = {}
    for model, tokenizer_dir, template in (
        ("fleet-a", fleet.tritons[0].model_dir, None),
        ("fleet-b-latest", fleet.tokenizer_b, TEMPLATE_B),
    ):
        reply = client.chat.completions.create(model=model, messages=messages, max_tokens=4, temperature=0)
        assert reply.choices[0].message.content and reply.usage is not None
        tokenizer = load_tokenizer(tokenizer_dir)
        prompt = tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=True
        )
        counts[model] = len(tokenizer.encode(prompt, add_special_tokens=False))
        assert reply.usage.prompt_tokens == counts[model]
    assert counts["fleet-a"] < counts["fleet-b-latest"]  # fewer merges: more tokens for the same text
    with pytest.raises(openai.NotFoundError, match="The model 'fleet-c' does not exist"):
        client.chat.completions.create(model="fleet-c", messages=messages, max_tokens=4)


async def chat_turns(gateway: GatewayProcess, conversation: int, turns: int) -> list[tuple[str, dict[str, object]]]:
    """One conversation, turn after turn, each sent with its own request id; returns (id, usage) per turn."""
    messages = [{"role": "system", "content": SYSTEM}]
    ids = []
    async with httpx.AsyncClient(timeout=30) as http:
        for turn in range(turns):
            messages.append({"role": "user", "content": f"Conversation {conversation}, question {turn}: why?"})
            request_id = f"conv{conversation}-turn{turn}-{os.getpid()}"
            response = await http.post(
                f"{gateway.v1}/chat/completions",
                json={"model": "fleet-a", "messages": messages, "max_tokens": 12, "temperature": 0},
                headers={"X-Request-Id": request_id},
            )
            assert response.status_code == 200, response.text
            messages.append({"role": "assistant", "content": response.json()["choices"][0]["message"]["content"]})
            ids.append((request_id, response.json()["usage"]))
    return ids


def test_prefix_affinity_keeps_conversations_on_their_upstream(fleet: Fleet) -> None:
    async def conversations() -> list[list[tuple[str, dict[str, object]]]]:
        # Five, not six: with a multiple of three in lockstep, even round robin would keep each on one replica.
        return await asyncio.gather(*(chat_turns(fleet.gateway, c, 6) for c in range(5)))

    turns = asyncio.run(conversations())
    ids = [[request_id for request_id, _ in conv] for conv in turns]
    where = upstreams_of(fleet.gateway, {i for conv in ids for i in conv})
    on_home = sum(Counter(where[i] for i in conv).most_common(1)[0][1] for conv in ids)
    assert on_home >= 0.9 * 30, [[where[i] for i in conv] for conv in ids]
    homes = {Counter(where[i] for i in conv).most_common(1)[0][0] for conv in ids}
    assert len(homes) >= 2  # concurrent conversations do not all pile onto one replica
    assert set(where.values()) <= {fleet.address(i) for i in range(3)}
    # The engine's kv_cache_reused_blocks, as usage.prompt_tokens_details.cached_tokens: a later turn on its
    # conversation's replica finds the earlier turns cached (whole 16-token blocks, never the whole prompt).
    for conv in turns:
        for (request_id, usage), (earlier_id, earlier) in zip(conv[1:], conv, strict=False):
            cached = usage["prompt_tokens_details"]["cached_tokens"]  # type: ignore[index]
            assert cached % 16 == 0 and cached < usage["prompt_tokens"], usage  # type: ignore[operator]
            if where[request_id] == where[earlier_id]:
                assert cached >= (earlier["prompt_tokens"] // 16 - 1) * 16, (earlier, usage)  # type: ignore[operator]
    hits = metric(fleet.gateway, "gateway_routing_cached_tokens_total", model="fleet-a", reason="prefix_hit")
    routed = metric(fleet.gateway, "gateway_routing_prompt_tokens_total", model="fleet-a", reason="prefix_hit")
    assert routed > 0 and hits / routed > 0.7


def test_stop_reaches_the_upstream_that_runs_the_generation(fleet: Fleet) -> None:
    async def start_then_leave() -> int:
        body = {"model": "fleet-a", "prompt": "go", "max_tokens": 3000, "stream": True, "ignore_eos": True}
        async with (
            httpx.AsyncClient(timeout=30) as http,
            http.stream("POST", f"{fleet.gateway.v1}/completions", json=body) as response,
        ):
            assert response.status_code == 200
            chunks = 0
            async for _ in response.aiter_raw():
                chunks += 1
                if chunks == 5:
                    break
            running = [running_requests(t) for t in fleet.tritons]
            assert sorted(running) == [0, 0, 1], running
            return running.index(1)

    busy = asyncio.run(start_then_leave())
    deadline = time.monotonic() + 1.0
    while running_requests(fleet.tritons[busy]) > 0:
        assert time.monotonic() < deadline, "the generation still runs 1 s after the client left"
        time.sleep(0.02)


@dataclass
class Outcome:
    started: float
    status: int
    error: dict[str, object] | None
    ended_with_done: bool
    tokens_before_error: int


async def load_worker(gateway: GatewayProcess, until: float, stream: bool, outcomes: list[Outcome]) -> None:
    body = {
        "model": "fleet-a",
        "messages": [{"role": "user", "content": "Count to forty, slowly."}],
        "max_tokens": 40,
        "ignore_eos": True,
        "stream": stream,
    }
    async with httpx.AsyncClient(timeout=30) as http:
        while time.monotonic() < until:
            started = time.monotonic()
            if not stream:
                response = await http.post(f"{gateway.v1}/chat/completions", json=body)
                error = None if response.status_code == 200 else response.json()["error"]
                outcomes.append(Outcome(started, response.status_code, error, True, 0))
                continue
            events: list[str] = []
            async with http.stream("POST", f"{gateway.v1}/chat/completions", json=body) as response:
                buffer = ""
                async for text in response.aiter_text():
                    buffer += text
                    while "\n\n" in buffer:
                        event, buffer = buffer.split("\n\n", 1)
                        events.append(event)
            error_event = next((e for e in events if e.startswith("event: error")), None)
            error = json.loads(error_event.split("data: ", 1)[1])["error"] if error_event else None
            tokens = sum('"content":"' in e and '"content":""' not in e for e in events)
            done = bool(events) and events[-1] == "data: [DONE]"
            outcomes.append(Outcome(started, response.status_code, error, done, tokens))


def test_one_triton_killed_under_load_then_rejoining(fleet: Fleet) -> None:
    victim = 0
    outcomes: list[Outcome] = []

    async def load_while_killing() -> float:
        until = time.monotonic() + 6
        workers = [load_worker(fleet.gateway, until, stream=i < 9, outcomes=outcomes) for i in range(12)]
        tasks = [asyncio.create_task(w) for w in workers]
        await asyncio.sleep(2)
        killed_at = time.monotonic()
        os.killpg(fleet.tritons[victim].process.pid, signal.SIGKILL)
        await asyncio.gather(*tasks)
        return killed_at

    killed_at = asyncio.run(load_while_killing())
    after = [o for o in outcomes if o.started >= killed_at]
    failed = [o for o in outcomes if o.status != 200 or o.error is not None]
    assert len(after) > 50 and all(o.status == 200 and o.error is None and o.ended_with_done for o in after)
    assert all(o.status == 200 for o in outcomes), [o for o in outcomes if o.status != 200][:3]
    for outcome in failed:  # streams that ran on the killed Triton: tokens, then an error event, then [DONE]
        assert outcome.started < killed_at and outcome.ended_with_done and outcome.tokens_before_error > 0
        assert outcome.error is not None and outcome.error["type"] == "service_unavailable"
    assert metric(fleet.gateway, "gateway_upstream_failures_total", upstream=fleet.address(victim)) >= 1
    assert metric(fleet.gateway, "gateway_upstream_healthy", model="fleet-a", upstream=fleet.address(victim)) == 0

    # Back on the same ports: it rejoins the pool and gets requests again.
    fleet.tritons[victim] = fleet.stack.enter_context(dev_triton(OPTIONS, ports=fleet.ports[victim]))
    deadline = time.monotonic() + 20
    while metric(fleet.gateway, "gateway_upstream_healthy", model="fleet-a", upstream=fleet.address(victim)) != 1:
        assert time.monotonic() < deadline, "the restarted Triton did not rejoin"
        time.sleep(0.2)

    async def spread() -> list[str]:
        async def one(index: int) -> str:
            request_id = f"rejoin-{index}-{os.getpid()}"
            async with httpx.AsyncClient(timeout=30) as http:
                body = {"model": "fleet-b", "prompt": "go", "max_tokens": 30, "ignore_eos": True}
                response = await http.post(
                    f"{fleet.gateway.v1}/completions", json=body, headers={"X-Request-Id": request_id}
                )
                assert response.status_code == 200, response.text
            return request_id

        return await asyncio.gather(*(one(i) for i in range(6)))

    where = upstreams_of(fleet.gateway, set(asyncio.run(spread())))
    assert fleet.address(victim) in where.values()  # least outstanding over six at once uses all three
