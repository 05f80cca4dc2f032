"""The gateway over raw HTTP: SSE framing, error bodies, readiness, and `trtllm-gateway dev` answering curl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.devstack import TritonServer, free_port
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e


def chat(gateway: GatewayProcess, **extra: object) -> dict[str, object]:
    return {"model": gateway.model, "messages": [{"role": "user", "content": "Hello"}], **extra}


def test_sse_framing(gateway: GatewayProcess) -> None:
    with httpx.stream(
        "POST",
        f"{gateway.v1}/chat/completions",
        # Greedy, so that the random dev model does not end early with a sampled end-of-sequence token.
        json=chat(gateway, stream=True, max_tokens=6, temperature=0.0),
        timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(response.iter_raw()).decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b'{"model": "x", "messages": [', 400, None),
        (b"[1, 2]", 400, None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model"),
        (b'{"model": "trtllm-dev", "messages": [{"role": "user", "content": 5}]}', 400, "messages[0].content"),
        (b'{"model": "trtllm-dev", "messages": [{"role": "user", "content": "x"}], "top_p": 7}', 400, "top_p"),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
    ],
)
def test_error_bodies(gateway: GatewayProcess, body: bytes, status: int, param: str | None) -> None:
    response = httpx.post(f"{gateway.v1}/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    assert "Traceback" not in response.text


def test_health_and_version(gateway: GatewayProcess) -> None:
    assert httpx.get(f"{gateway.url}/health/live").status_code == 200
    assert httpx.get(f"{gateway.url}/health/ready").status_code == 200
    version = httpx.get(f"{gateway.url}/version").json()
    assert version["models"][gateway.model]["triton_version"]
    assert httpx.get(f"{gateway.url}/docs").status_code == 200
    assert "/v1/chat/completions" in httpx.get(f"{gateway.url}/openapi.json").json()["paths"]


def test_head_on_the_get_routes_answers_like_get(gateway: GatewayProcess) -> None:
    for path in ("/metrics", "/health/live", "/health/ready", "/v1/models", f"/v1/models/{gateway.model}", "/version"):
        head = httpx.head(f"{gateway.url}{path}", timeout=10)
        assert head.status_code == 200 and head.content == b"", path
        assert int(head.headers["content-length"]) > 0
        # curl, as a monitoring probe would call it: the status line, and no body left on the connection.
        probe = subprocess.run(["curl", "-sSI", "--max-time", "10", f"{gateway.url}{path}"], capture_output=True,
                               text=True, check=True)  # fmt: skip
        assert probe.stdout.startswith("HTTP/1.1 200"), probe.stdout


def test_a_body_that_is_not_utf8_is_invalid_json(gateway: GatewayProcess) -> None:
    body = b'{"model": "trtllm-dev", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
    response = httpx.post(f"{gateway.v1}/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_triton_unreachable_gives_503(hf_triton: TritonServer, tmp_path: Path) -> None:
    dead_url = f"127.0.0.1:{free_port()}"
    gateway = start_gateway(hf_triton, tmp_path, triton_url=dead_url, wait_for="/health/live")
    try:
        ready = httpx.get(f"{gateway.url}/health/ready")
        assert ready.status_code == 503 and ready.json()["error"]["type"] == "service_unavailable"
        response = httpx.post(f"{gateway.v1}/chat/completions", json=chat(gateway))
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "upstream_unavailable"
    finally:
        stop_gateway(gateway)


def test_dev_command_answers_curl(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "dev", "--port", str(port), "--engine", "synthetic"],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "curl " not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        curl_line = next(line for line in log.read_text().splitlines() if line.strip().startswith("curl "))
        assert f"127.0.0.1:{port}" in curl_line
        result = subprocess.run(
            ["bash", "-c", curl_line + " -sS --max-time 60"], capture_output=True, text=True, check=True
        )
        body = json.loads(result.stdout)
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    finally:
        process.terminate()
        process.wait(30)
