"""A hung replica (a real Triton SIGSTOPped: the kernel still accepts its connections, nothing answers) leaves the
routing candidates within about 3 s, with the default health settings, while a replica that is busy, not hung,
stays in. Prints the measured time (it was ~14 s when one slow health answer of 5 s had to happen twice)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.devstack import DevStackOptions, TritonServer, dev_triton, free_port
from gateway.devstack.triton_server import TritonPorts
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway
from tests.e2e.test_fleet import metric

pytestmark = pytest.mark.e2e

OPTIONS = DevStackOptions(engine="synthetic", synthetic_ttft_ms=5, synthetic_itl_ms=20)


@dataclass
class Pair:
    tritons: list[TritonServer]
    addresses: list[str]
    gateway: GatewayProcess


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    folder: Path = tmp_path_factory.mktemp("hung")
    with contextlib.ExitStack() as stack:
        ports = [TritonPorts(grpc=free_port(), http=free_port(), metrics=free_port()) for _ in range(2)]
        with ThreadPoolExecutor(2) as starter:
            tritons = list(starter.map(lambda p: stack.enter_context(dev_triton(OPTIONS, ports=p)), ports))
        addresses = [f"127.0.0.1:{p.grpc}" for p in ports]
        models_file = folder / "models.yaml"
        models_file.write_text(  # the default health settings: the point is what they give
            f"models:\n  - name: pair\n    tokenizer: {tritons[0].model_dir}\n    upstreams: {json.dumps(addresses)}\n"
        )
        gateway = start_gateway(None, folder, "--first-token-timeout-s", "3", models_file=models_file)
        stack.callback(stop_gateway, gateway)
        yield Pair(tritons, addresses, gateway)


def healthy(pair: Pair, index: int) -> float:
    return metric(pair.gateway, "gateway_upstream_healthy", model="pair", upstream=pair.addresses[index])


async def keep_busy(gateway: GatewayProcess, until: float) -> int:
    """Streams from 12 clients, one after another each, until `until`; returns how many completed."""
    body = {"model": "pair", "prompt": "go", "max_tokens": 40, "stream": True, "ignore_eos": True}
    done = 0

    async def client() -> None:
        nonlocal done
        async with httpx.AsyncClient(timeout=10) as http:
            while time.monotonic() < until:
                with contextlib.suppress(httpx.HTTPError):
                    async with http.stream("POST", f"{gateway.v1}/completions", json=body) as response:
                        async for _ in response.aiter_raw():
                            pass
                        done += response.status_code == 200

    await asyncio.gather(*(client() for _ in range(12)))
    return done


def test_a_hung_replica_leaves_routing_within_3_s_and_a_busy_one_stays(pair: Pair) -> None:
    deadline = time.monotonic() + 20
    while not (healthy(pair, 0) == healthy(pair, 1) == 1):
        assert time.monotonic() < deadline, "the replicas did not become healthy"
        time.sleep(0.2)
    hung = pair.tritons[0]
    observed: dict[str, float] = {}

    async def scenario() -> int:
        load = asyncio.create_task(keep_busy(pair.gateway, time.monotonic() + 12))
        await asyncio.sleep(2)  # both replicas busy
        stopped_at = time.monotonic()
        os.killpg(hung.process.pid, signal.SIGSTOP)
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                while "left" not in observed and time.monotonic() - stopped_at < 30:
                    text = (await http.get(f"{pair.gateway.url}/metrics")).text
                    values = {}
                    for line in text.splitlines():
                        for index, address in enumerate(pair.addresses):
                            if line.startswith("gateway_upstream_healthy{") and f'upstream="{address}"' in line:
                                values[index] = float(line.rsplit(" ", 1)[1])
                    if values.get(1) == 0:
                        observed["busy_ejected"] = time.monotonic() - stopped_at
                    if values.get(0) == 0:
                        observed["left"] = time.monotonic() - stopped_at
                    await asyncio.sleep(0.05)
            return await load
        finally:
            os.killpg(hung.process.pid, signal.SIGCONT)

    completed = asyncio.run(scenario())
    print(f"hung replica left the routing candidates {observed.get('left', float('nan')):.2f} s after SIGSTOP")
    assert "left" in observed, "the hung replica was still a routing candidate 30 s after SIGSTOP"
    # The health gauge is published every second: the candidates changed up to 1 s before the gauge shows it, and
    # two missed probes take 2-4 s (docs/architecture.md); a loaded 2-core CI machine measured 4.9 s.
    assert observed["left"] < 6
    assert "busy_ejected" not in observed, "the busy, healthy replica was taken out of routing"
    assert completed > 50  # the busy replica kept serving throughout
    deadline = time.monotonic() + 45  # a resumed Triton first works off what queued while it was stopped
    while healthy(pair, 0) != 1:  # resumed, it answers again and rejoins
        assert time.monotonic() < deadline, "the resumed Triton did not rejoin"
        time.sleep(0.2)
