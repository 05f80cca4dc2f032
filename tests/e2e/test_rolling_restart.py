"""A rolling restart behind a real nginx loses nothing: two gateways, streaming load, each in turn gets SIGTERM
(and is started again) while streams run; every request must complete with `data: [DONE]`."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway.devstack import DevStackOptions, TritonServer, dev_triton, free_port
from gateway.devstack.dev_model import DEV_MODEL_NAME
from tests.e2e.conftest import GatewayProcess, start_gateway

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx (Debian package) needed")]
CLIENTS = 6
DRAIN_S = "20"


def nginx_config(prefix: Path, port: int, upstreams: list[str]) -> str:
    """Round robin over the gateways; a refused connection or a draining gateway's 503 goes to the other one."""
    servers = "\n".join(f"        server {upstream} max_fails=0;" for upstream in upstreams)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream gateways {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout http_503 non_idempotent;
            proxy_next_upstream_tries 4;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def synthetic_triton() -> Iterator[TritonServer]:
    """Triton with the synthetic engine: streams of predictable length (20 ms between tokens)."""
    with dev_triton(DevStackOptions(engine="synthetic", synthetic_ttft_ms=20, synthetic_itl_ms=20)) as server:
        yield server


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    """nginx on a free port in front of two gateway ports (the gateways are started by the test)."""
    ports = [free_port(), free_port()]
    port = free_port()
    (tmp_path / "nginx.conf").write_text(nginx_config(tmp_path, port, [f"127.0.0.1:{p}" for p in ports]))
    process = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"])
    deadline = time.monotonic() + 10
    while not (tmp_path / "nginx.pid").exists():
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "error.log").read_text()
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", ports
    process.terminate()
    process.wait(10)


@dataclass
class Load:
    """Streaming chat requests in a loop from several threads, with a tally of what came back."""

    url: str
    completed: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> None:
        body = {
            "model": DEV_MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 40, "stream": True,
        }  # fmt: skip
        with httpx.Client(timeout=60) as http:
            while not self.stop.is_set():
                try:
                    with http.stream("POST", f"{self.url}/v1/chat/completions", json=body) as response:
                        lines = [line for line in response.iter_lines() if line]
                    ok = response.status_code == 200 and lines[-1:] == ["data: [DONE]"] and "error" not in lines[-2]
                    outcome = None if ok else f"{response.status_code}: {lines[-2:]}"
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    if outcome is None:
                        self.completed += 1
                    else:
                        self.failures.append(outcome)


def restart(triton: TritonServer, log_dir: Path, gateway: GatewayProcess, port: int) -> GatewayProcess:
    """SIGTERM (drain), wait for a clean exit, then start a new gateway on the same port."""
    gateway.process.terminate()
    assert gateway.process.wait(int(DRAIN_S) + 10) == 0, gateway.log()
    assert "draining" in gateway.log()
    return start_gateway(triton, log_dir, "--drain-timeout-s", DRAIN_S, port=port)


def test_rolling_restart_under_streaming_load_fails_no_request(
    synthetic_triton: TritonServer, nginx: tuple[str, list[int]], tmp_path: Path
) -> None:
    url, ports = nginx
    gateways = [start_gateway(synthetic_triton, tmp_path, "--drain-timeout-s", DRAIN_S, port=p) for p in ports]
    load = Load(url)
    threads = [threading.Thread(target=load.client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        before = load.completed
        for index, port in enumerate(ports):
            gateways[index] = restart(synthetic_triton, tmp_path, gateways[index], port)
            time.sleep(1.5)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(60)
        for gateway in gateways:
            gateway.process.terminate()
            gateway.process.wait(30)
    print(f"completed {load.completed} streams, {before} before the first restart; failures: {load.failures[:3]}")
    assert load.failures == []
    assert before > 0 and load.completed > before + CLIENTS  # traffic flowed during both restarts
