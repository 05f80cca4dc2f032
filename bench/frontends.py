"""Starting and stopping the front-ends under test: this gateway (any mode, N workers), LiteLLM's proxy and
Triton's own OpenAI frontend (bench/tritonfe.py)."""

from __future__ import annotations

import functools
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import ProcessTree, pinned, stop_process, wait_http_ok
from bench.prompts import chat_template
from bench.spec import Frontend

SERVED_MODEL = "trtllm-dev"
REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 180.0


@dataclass
class RunningFrontend:
    """A front-end that accepts load: where to send it, and which processes to measure."""

    frontend: Frontend
    client: str  # openai | triton
    target: str  # base URL, or Triton gRPC host:port
    model: str = SERVED_MODEL
    headers: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    trust_usage: bool = True
    extra_body: dict[str, object] = field(default_factory=dict)  # merged into every request body
    # Triton runs inside this front-end's process tree (Triton's own frontend): its tree is the whole system, the
    # shared tritonserver idles during its runs, and `metrics_url` is where its engines are drained between runs.
    own_triton: bool = False
    metrics_url: str = ""
    cleanup: Callable[[], None] | None = None

    def tree(self) -> ProcessTree | None:
        """The processes to measure (None: the load generator itself is the front-end)."""
        return ProcessTree([self.process.pid]) if self.process else None

    def exited(self) -> bool:
        """Whether its process has exited (a crash: it is stopped only by `stop`)."""
        return self.process is not None and self.process.poll() is not None

    def stop(self) -> None:
        """Stop the process group, if there is one."""
        if self.process is not None:
            stop_process(self.process)
        if self.cleanup is not None:
            self.cleanup()

    def log_tail(self, lines: int = 30) -> str:
        """The end of its log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def gateway_python(source: str = "") -> tuple[list[str], dict[str, str]]:
    """The command that runs `python -m gateway` from `source` (a folder holding another `gateway/` package, a
    baseline version) or else from this repository, and its environment.

    The package's folder goes first on PYTHONPATH and `-P` keeps the working directory off `sys.path`: with `-m`,
    Python puts the working directory first, so a run started from the repository root imported this
    repository's `gateway/` even for a baseline (every `--baseline` run before this change measured the same
    gateway twice)."""
    root = str(Path(source).resolve()) if source else str(REPO_ROOT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return [sys.executable, "-P", "-m", "gateway"], env


@functools.cache
def gateway_supports_workers() -> bool:
    """Whether `python -m gateway serve --help` lists `--workers`."""
    command, env = gateway_python()
    out = subprocess.run([*command, "serve", "--help"], capture_output=True, text=True, check=False, env=env).stdout
    return "--workers" in out


def _launch(command: list[str], env: dict[str, str], cpus: tuple[int, ...], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=pinned(cpus),
        )


def start_gateway(
    frontend: Frontend, grpc_url: str, model_dir: Path, port: int, cpus: tuple[int, ...], log_dir: Path
) -> RunningFrontend:
    """`python -m gateway serve` in front of Triton, pinned to `cpus`, ready to serve."""
    python, env = gateway_python(frontend.source)
    command = [
        *python, "--log-level", "warning", "serve",
        "--triton-url", grpc_url,
        "--triton-model", frontend.triton_model,
        "--tokenizer", str(model_dir),
        "--served-model-name", SERVED_MODEL,
        "--port", str(port),
    ]  # fmt: skip
    if frontend.workers > 1:
        command += ["--workers", str(frontend.workers)]
    command += list(frontend.args)
    log_path = log_dir / f"{frontend.name.replace('/', '_').replace('+', '_')}.log"
    # The runs measure the gateway's own cost at a given concurrency: no gateway-side queue in front of Triton
    # (--max-upstream-requests defaults to twice the engine's batch). An environment variable, so older baselines
    # ignore it.
    env.setdefault("GATEWAY_MAX_UPSTREAM_REQUESTS", "0")
    # A store of its own (Responses), never the user's default one.
    env.setdefault("GATEWAY_STATE_DIR", str(log_path.with_suffix(".state")))
    process = _launch(command, env, cpus, log_path)
    running = RunningFrontend(frontend, "openai", f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    if frontend.body:
        running.extra_body = json.loads(frontend.body)
    try:
        wait_http_ok(f"{running.target}/health/ready", READY_TIMEOUT_S, process)
    except Exception as exc:
        running.stop()
        raise RuntimeError(f"gateway did not start: {exc}\n{running.log_tail()}") from exc
    return running


def litellm_config(http_url: str, triton_model: str, model_dir: Path) -> dict[str, object]:
    """LiteLLM proxy config: the Triton provider on the generate endpoint, the dev chat template pre-seeded."""
    template = chat_template(str(model_dir))
    known = {"status": "success", "tokenizer": template}
    return {
        "model_list": [
            {
                "model_name": SERVED_MODEL,
                "litellm_params": {
                    "model": f"triton/{triton_model}",
                    "api_base": f"{http_url}/v2/models/{triton_model}/generate",
                },
            }
        ],
        "litellm_settings": {
            "drop_params": True,
            "telemetry": False,
            # Looked up by the model name LiteLLM resolves; seed the likely spellings (offline, no hub call).
            "known_tokenizer_config": {name: known for name in (SERVED_MODEL, triton_model, f"triton/{triton_model}")},
        },
    }


def start_litellm(
    frontend: Frontend, http_url: str, model_dir: Path, port: int, cpus: tuple[int, ...], log_dir: Path
) -> RunningFrontend:
    """LiteLLM's proxy (`litellm --config`) with its Triton provider, offline, ready to serve."""
    config_path = log_dir / "litellm_config.json"
    config_path.write_text(json.dumps(litellm_config(http_url, frontend.triton_model, model_dir), indent=1))
    key = f"sk-{secrets.token_hex(16)}"
    env = dict(os.environ)
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_MASTER_KEY": key,
            "LITELLM_LOG": "ERROR",
            "DISABLE_SCHEMA_UPDATE": "True",
        }
    )
    litellm = Path(sys.executable).parent / "litellm"
    if not litellm.exists():
        from bench.tritonfe import FrontendSkipped

        raise FrontendSkipped(f"no LiteLLM proxy ({litellm}; pip install -e '.[bench]')")
    command = [str(litellm), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)]
    if frontend.workers > 1:
        command += ["--num_workers", str(frontend.workers)]
    log_path = log_dir / f"{frontend.name.replace('/', '_')}.log"
    process = _launch(command, env, cpus, log_path)
    running = RunningFrontend(
        frontend,
        "openai",
        f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {key}"},
        process=process,
        log_path=log_path,
        trust_usage=False,  # LiteLLM's Triton provider reports zeros or a tiktoken estimate
        # Forwarded to Triton as an input: the same request the gateway sends (else non-streamed text
        # repeats the prompt, and Triton does more work).
        extra_body={"exclude_input_in_output": True},
    )
    try:
        wait_http_ok(f"{running.target}/health/liveliness", READY_TIMEOUT_S, process)
    except Exception as exc:
        running.stop()
        raise RuntimeError(f"LiteLLM proxy did not start: {exc}\n{running.log_tail()}") from exc
    return running


def start_tritonfe(frontend: Frontend, engine: Any, port: int, cpus: tuple[int, ...], log_dir: Path) -> RunningFrontend:
    """Triton's OpenAI frontend on its own in-process Triton, rendered with the bench's synthetic engine (`engine`,
    a DevStackOptions), pinned to `cpus`; bench.tritonfe.FrontendSkipped when its set-up is missing here."""
    from bench import tritonfe

    run_dir = log_dir / frontend.name.replace("/", "_")
    process, log_path, cleanup = tritonfe.start(engine, port, cpus, run_dir, _launch)
    base = f"http://127.0.0.1:{port}"
    return RunningFrontend(
        frontend,
        "openai",
        f"{base}/v1",
        model=tritonfe.MODEL,
        process=process,
        log_path=log_path,
        own_triton=True,
        metrics_url=f"{base}/metrics",
        cleanup=cleanup,
    )


def direct_frontend(frontend: Frontend, grpc_url: str) -> RunningFrontend:
    """The direct gRPC client: nothing to start; the load generator is the front-end."""
    return RunningFrontend(frontend, "triton", grpc_url, model=frontend.triton_model)


def url_frontend(frontend: Frontend, api_key: str | None) -> RunningFrontend:
    """Any OpenAI-compatible server given by URL (no process to measure)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return RunningFrontend(frontend, "openai", frontend.url.rstrip("/"), model=frontend.model, headers=headers)
