"""Metrics, request ids and access logs of a gateway with two workers, against the real Triton."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.devstack import DevStackOptions, TritonServer, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def verbose_triton() -> Iterator[TritonServer]:
    """Synthetic engine, verbose Triton log (the dev engine logs each request id)."""
    with dev_triton(DevStackOptions(engine="synthetic", synthetic_ttft_ms=5, synthetic_itl_ms=10), log_verbose=1) as s:
        yield s


@pytest.fixture(scope="module")
def two_workers(verbose_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = start_gateway(verbose_triton, tmp_path_factory.mktemp("obs"), "--workers", "2", "--log-format", "json")
    yield gateway
    stop_gateway(gateway)


def metric_samples(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    return sum(v for (n, lab), v in samples.items() if n == name and set(labels.items()) <= set(lab))


async def cut_stream(gateway: GatewayProcess) -> None:
    body = {"model": gateway.model, "messages": [{"role": "user", "content": "x"}], "max_tokens": 500, "stream": True}
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("POST", gateway.v1 + "/chat/completions", json=body) as r,
    ):
        async for _ in r.aiter_raw():
            break


def test_counts_add_up_across_workers(two_workers: GatewayProcess, verbose_triton: TritonServer) -> None:
    gateway = two_workers
    body = {"model": gateway.model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
    ids = []
    for index in range(6):  # several connections, so both workers get some
        response = httpx.post(
            f"{gateway.url}{CHAT}", json=body | {"stream": index % 2 == 1}, headers={"X-Request-Id": f"obs-{index}"}
        )
        assert response.status_code == 200
        ids.append(response.headers["x-request-id"])
    assert ids == [f"obs-{i}" for i in range(6)]
    assert httpx.post(f"{gateway.url}{CHAT}", json=body | {"n": 9}).status_code == 400
    asyncio.run(cut_stream(gateway))
    time.sleep(1.0)  # let the cut stream's worker record it
    got = metric_samples(gateway.url)
    labels = {"model": gateway.model, "endpoint": CHAT}
    assert total(got, "gateway_requests_total", **labels, status="200") == 6
    assert total(got, "gateway_requests_total", **labels, status="200", stream="true") == 3
    assert total(got, "gateway_requests_total", **labels, status="499", stream="true") == 1  # the cut stream
    assert total(got, "gateway_requests_total", **labels, status="400") == 1
    assert total(got, "gateway_completion_tokens_total", model=gateway.model) >= 6 * 8
    assert total(got, "gateway_finish_reasons_total", model=gateway.model, reason="length") == 6
    assert total(got, "gateway_finish_reasons_total", model=gateway.model, reason="cancelled") == 1
    assert total(got, "gateway_client_disconnects_total", **labels) == 1
    assert total(got, "gateway_time_to_first_token_seconds_count", **labels) == 7
    assert total(got, "gateway_request_duration_seconds_count", **labels) == 8
    ttft_sum = total(got, "gateway_time_to_first_token_seconds_sum", **labels)
    duration_sum = total(got, "gateway_request_duration_seconds_sum", **labels)
    assert 0 < ttft_sum < duration_sum
    assert total(got, "gateway_requests_in_flight", endpoint=CHAT) == 0  # (the scrape itself is in flight)
    # Request ids reach Triton: the dev engine logs every request id it serves.
    triton_log = verbose_triton.log_path.read_text(errors="replace")
    assert all(f"chatcmpl-obs-{i}-" in triton_log for i in range(6))
    # One JSON access line per request, tagged with its id, no text.
    lines = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "gateway.access"]
    assert {line["request_id"] for line in access} >= {f"obs-{i}" for i in range(6)}
    assert all("hello" not in json.dumps(line) for line in lines)
