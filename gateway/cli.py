"""Command line: `trtllm-gateway serve | dev | triton | repo | keys`. Parses arguments and hands over; nothing else."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from gateway.deploy.repo_command import add_arguments as add_repo_arguments
from gateway.deploy.repo_command import run_repo
from gateway.engine.routing import POLICIES
from gateway.errors import ConfigurationError
from gateway.telemetry import configure_logging
from gateway.tenants.keys_command import add_arguments as add_keys_arguments
from gateway.tenants.keys_command import run_keys_new


def _add_triton_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dev Triton")
    group.add_argument("--engine", choices=["hf", "synthetic", "scripted"], default="hf", help="dev engine kind")
    group.add_argument(
        "--family", choices=["dev", "qwen", "deepseek", "mistral"], default="dev", help="dev model family"
    )
    group.add_argument(
        "--vision", action="store_true", help="a vision model: images in (scripted or synthetic engine, dev family)"
    )
    group.add_argument("--triton-grpc-port", type=int, default=0, help="0 = a free port")
    group.add_argument("--triton-http-port", type=int, default=0, help="0 = a free port")
    group.add_argument("--triton-metrics-port", type=int, default=0, help="0 = a free port")
    group.add_argument("--synthetic-ttft-ms", type=float, default=20.0)
    group.add_argument("--synthetic-itl-ms", type=float, default=5.0)
    group.add_argument("--triton-log-verbose", type=int, default=0)


def _triton_ports(args: argparse.Namespace):
    from gateway.devstack import TritonPorts

    free = TritonPorts.free()
    return TritonPorts(
        grpc=args.triton_grpc_port or free.grpc,
        http=args.triton_http_port or free.http,
        metrics=args.triton_metrics_port or free.metrics,
    )


def _dev_options(args: argparse.Namespace):
    from gateway.devstack import DevStackOptions

    return DevStackOptions(
        engine=args.engine,
        family=args.family,
        synthetic_ttft_ms=args.synthetic_ttft_ms,
        synthetic_itl_ms=args.synthetic_itl_ms,
        vision=args.vision,
    )


def run_triton(args: argparse.Namespace) -> int:
    """`trtllm-gateway triton`: run the dev Triton in the foreground until Ctrl-C or SIGTERM."""
    from gateway.devstack import dev_triton

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with dev_triton(_dev_options(args), ports=_triton_ports(args), log_verbose=args.triton_log_verbose) as s:
        print(f"Triton ready ({args.engine} engine): models {', '.join(s.models)}", flush=True)
        print(f"  gRPC    {s.grpc_url}\n  HTTP    {s.http_url}\n  metrics {s.metrics_url}", flush=True)
        print(f"  log     {s.log_path}", flush=True)
        try:
            while not stop.wait(0.5):
                if s.process.poll() is not None:
                    print(f"tritonserver exited ({s.process.returncode}):\n{s.log_tail()}", file=sys.stderr)
                    return 1
        except KeyboardInterrupt:
            pass
    return 0


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    # Defaults are None so that only flags actually given override GATEWAY_* variables and Settings defaults.
    group = parser.add_argument_group("gateway")
    group.add_argument(
        "--models-file", help="YAML file of the served models, instead of the model flags [GATEWAY_MODELS_FILE]"
    )
    group.add_argument(
        "--triton-url",
        help="Triton gRPC endpoint host:port, or dns:///name:port; comma-separated for several [GATEWAY_TRITON_URL]",
    )
    group.add_argument(
        "--triton-model",
        help="ensemble (default), tensorrt_llm_bls, or tensorrt_llm (direct mode) [GATEWAY_TRITON_MODEL]",
    )
    group.add_argument("--served-model-name", help="model name clients use [GATEWAY_SERVED_MODEL_NAME]")
    group.add_argument("--tokenizer", help="Hugging Face tokenizer folder [GATEWAY_TOKENIZER]")
    group.add_argument("--chat-template", help="Jinja chat template file [GATEWAY_CHAT_TEMPLATE]")
    group.add_argument("--host", help="bind address (default 127.0.0.1) [GATEWAY_HOST]")
    group.add_argument("--port", type=int, help="bind port (default 8000) [GATEWAY_PORT]")
    group.add_argument("--default-max-tokens", type=int, help="max_tokens when a request sets none")
    group.add_argument("--max-tokens-limit", type=int, help="largest max_tokens a request may ask for")
    group.add_argument("--max-n", type=int, help="largest n (choices per request) a request may ask for (default 8)")
    group.add_argument(
        "--tool-call-parser",
        help="hermes, llama3_json, mistral, deepseek_v3, pythonic; auto (default: from the chat template) or none",
    )
    group.add_argument("--reasoning-parser", help="deepseek_r1, qwen3; auto (default: from the chat template) or none")
    group.add_argument(
        "--guided-json-whitespace",
        choices=["compact", "any"],
        help="JSON guides (response_format, forced tool calls): compact (default; no whitespace between JSON "
        "tokens, sent as an EBNF guide) or any (the engine's own JSON grammar)",
    )
    group.add_argument(
        "--engine-logits",
        action="store_true",
        default=None,
        help="the engine was built with --gather_generation_logits / --gather_context_logits (direct mode): "
        "enables top_logprobs and echo logprobs",
    )
    routing = parser.add_argument_group("routing over a model's upstreams (see README)")
    routing.add_argument("--routing", choices=POLICIES, help="policy (default least_outstanding) [GATEWAY_ROUTING]")
    routing.add_argument("--kv-block-size", type=int, help="tokens per KV-cache block, for prefix_affinity (64)")
    routing.add_argument("--session-header", help="header that names a client session (default x-session-id)")
    routing.add_argument(
        "--session-from-user", action="store_true", default=None, help="also keep requests with one `user` together"
    )
    limits = parser.add_argument_group("limits, timeouts and security (see README)")
    for flag, kind, text in (
        ("--max-concurrent-requests", int, "running generation requests at most; beyond: queue, then 429"),
        ("--max-queued-requests", int, "requests that may wait for a slot (default 0)"),
        ("--queue-timeout-s", float, "longest wait for a slot (default 10)"),
        ("--max-body-bytes", int, "larger request bodies get a 413 (default 8 MiB)"),
        ("--max-prompt-tokens", int, "longer prompts get a 400"),
        (
            "--max-upstream-requests",
            int,
            "requests open at each Triton at once, per worker; the rest wait (default: twice the engine's "
            "max_batch_size shared by the workers, else 128; 0: none)",
        ),
        ("--max-connections", int, "open connections per process (default: the ulimit -n less 128)"),
        ("--header-timeout-s", float, "a request's headers must arrive within this time (default 10)"),
        ("--body-timeout-s", float, "a request's whole body must arrive within this time (default 60)"),
        ("--connect-timeout-s", float, "Triton discovery RPCs and stop requests (default 5)"),
        ("--first-token-timeout-s", float, "time to first token (default 300)"),
        ("--idle-timeout-s", float, "longest gap between tokens (default 120)"),
        ("--request-timeout-s", float, "whole generation (default none)"),
        ("--drain-timeout-s", float, "on SIGTERM, time streams get to finish (default 30)"),
        ("--sse-keepalive-s", float, "longest silence on a stream before a comment line (default 15)"),
        ("--client-write-timeout-s", float, "longest a write waits for a client that stopped reading (default 60)"),
        ("--stream-interval", int, "streams send an event per N tokens, the first at once (default 1; 1 to 64)"),
        ("--upstream-streams", int, "gRPC streams per upstream and worker for ensemble/BLS calls (default 4; 0: none)"),
        ("--api-keys", str, "comma-separated API keys [GATEWAY_API_KEYS]"),
        ("--api-key-file", str, "file with one API key per line"),
        ("--keys-file", str, "YAML file of API keys with tenants, models, limits, priority (reloaded on change)"),
        ("--limits-url", str, "redis://host:port/db: the keys' limits shared by every replica (default: per process)"),
        ("--priority-aging-s", float, "a queued request counts one priority class higher per this wait (default 10)"),
        ("--cors-origins", str, "comma-separated allowed CORS origins (default: CORS off)"),
        ("--state-key", str, "secret that seals encrypted reasoning; the same on every replica [GATEWAY_STATE_KEY]"),
    ):
        limits.add_argument(flag, type=kind, help=text)
    limits.add_argument(
        "--protect-observability", action="store_true", default=None, help="API key also on /health/* and /metrics"
    )
    limits.add_argument(
        "--limits-on-error",
        choices=["open", "closed"],
        help="Redis unreachable: admit without limits (open, default) or refuse with 429 (closed)",
    )
    guides = parser.add_argument_group("guides and tools: bounds, then checks in worker processes (see README)")
    for flag, kind, text in (
        ("--max-guide-bytes", int, "one guide's text: a JSON schema, regex, grammar or choices (default 128 KiB)"),
        ("--max-guide-depth", int, "nesting levels of a JSON schema (default 64)"),
        ("--max-guide-refs", int, "$refs in one JSON schema (default 512)"),
        ("--max-guide-enum-values", int, "enum values, choices and anyOf/oneOf branches of a guide (default 2048)"),
        ("--max-guide-properties", int, "properties of one object in a JSON schema (default 128)"),
        ("--max-tools", int, "tools in one request (default 256)"),
        ("--max-tools-bytes", int, "all tool definitions of a request, as JSON (default 1 MiB)"),
        ("--guide-check-timeout-s", float, "meta-schema and xgrammar checks of one request (default 10)"),
        ("--guide-check-workers", int, "worker processes that check guides (default 1)"),
    ):
        guides.add_argument(flag, type=kind, help=text)
    images = parser.add_argument_group("images in requests: limits and URL fetching (see README)")
    for flag, kind, text in (
        ("--max-images", int, "images in one request (default 16)"),
        ("--image-max-bytes", int, "one image file, fetched or from a data: URL (default 20 MiB)"),
        ("--image-max-pixels", int, "one image's width x height, checked before decoding (default 4096 x 4096)"),
        ("--image-fetch-timeout-s", float, "fetching one image URL, redirects included (default 10)"),
        ("--image-fetch-allow-networks", str, "comma-separated CIDRs of non-public networks URLs may point to"),
        ("--image-cache-mb", int, "fetched images kept by URL for 5 minutes (default 64; 0: none)"),
        ("--image-placeholder", str, "an image's place in the prompt (default: <|image|> if the tokenizer has it)"),
    ):
        images.add_argument(flag, type=kind, help=text)
    store = parser.add_argument_group("stored responses and conversations (see README)")
    for flag, kind, text in (
        ("--store-url", str, "postgresql://user:password@host/db for replicas (default: SQLite in --state-dir)"),
        ("--state-dir", str, "folder of the SQLite store (default ~/.local/state/trtllm-gateway)"),
        ("--response-retention-days", float, "stored responses are deleted after this (default 30)"),
        ("--conversation-retention-days", float, "conversations go this long after their last change (default never)"),
        ("--max-stored-response-bytes", int, "one stored response with its input (default 16 MiB)"),
        ("--max-conversation-items", int, "items one conversation may hold (default 10000)"),
        ("--max-conversation-bytes", int, "bytes one conversation may hold (default 64 MiB)"),
        ("--background-lease-s", float, "a background response whose replica went silent this long fails (10)"),
    ):
        store.add_argument(flag, type=kind, help=text)
    group.add_argument("--otlp-endpoint", help="export OpenTelemetry traces to this OTLP/HTTP URL")
    group.add_argument("--workers", type=int, help="worker processes (default 1) [GATEWAY_WORKERS]")
    group.add_argument("--log-format", choices=["text", "json"], help="log lines as text or JSON [GATEWAY_LOG_FORMAT]")


def _settings(args: argparse.Namespace, **overrides: object):
    from gateway.config import Settings

    fields = set(Settings.model_fields)
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return Settings(**(given | overrides))


def _exit_cleanly(signum: int, _frame: object) -> None:
    """After uvicorn's graceful shutdown it re-raises the signal: end with status 0 and run `finally` blocks
    (the dev command's Triton is stopped there) instead of dying by the signal."""
    raise SystemExit(0)


def _serve(settings, banner: str | None = None) -> int:
    import shutil
    import tempfile

    import uvicorn

    from gateway.config import export_to_environment
    from gateway.protocols.sealing import deployment_secret

    configure_logging(settings.log_level, settings.log_format)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    common = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # uvicorn's httptools protocol with a header timeout and a connection limit (api/connections.py)
        "http": "gateway.api.connections:GuardedHttpToolsProtocol",
        "log_level": settings.log_level,
        "log_config": None,
        "access_log": False,  # the gateway writes its own access line, with tokens and timings
        # Our drain ends running streams after drain_timeout; this is uvicorn's backstop after that.
        "timeout_graceful_shutdown": settings.drain_timeout_s + 5,
    }
    if settings.workers > 1:
        from gateway.app import build_registry
        from gateway.tenants.keys_file import load_keys_file

        # Fail here, with one clear message and exit status 2, on what would make every worker fail at start-up
        # (uvicorn's supervisor would restart them forever).
        registry = build_registry(settings)
        if settings.keys_file is not None:
            load_keys_file(settings.keys_file, {name: model.name for name, model in registry.names()})
        # Workers are separate processes: they rebuild the settings from GATEWAY_* variables, and write their
        # metrics into a shared folder that /metrics sums (prometheus-client multiprocess mode).
        metrics_dir = tempfile.mkdtemp(prefix="trtllm-gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        if settings.state_key is None:  # one key for every worker, or none could open another's blobs
            settings = settings.model_copy(update={"state_key": deployment_secret(None)})
        export_to_environment(settings)
        if banner:
            print(banner, flush=True)
        try:
            uvicorn.run("gateway.app:app_from_environment", factory=True, workers=settings.workers, **common)
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return 0
    from gateway.app import app_from_settings

    server = uvicorn.Server(uvicorn.Config(app_from_settings(settings), **common))
    if banner:
        original_startup = server.startup

        async def startup_with_banner(sockets=None) -> None:
            await original_startup(sockets)
            print(banner, flush=True)

        server.startup = startup_with_banner  # type: ignore[method-assign]
    server.run()
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """`trtllm-gateway serve`: the gateway in front of an existing Triton."""
    return _serve(_settings(args))


def run_dev(args: argparse.Namespace) -> int:
    """`trtllm-gateway dev`: build the dev model, start the real Triton on CPU, serve the gateway in front."""
    from gateway.devstack import dev_triton
    from gateway.devstack.families import served_model_name

    with dev_triton(_dev_options(args), ports=_triton_ports(args), log_verbose=args.triton_log_verbose) as triton:
        model_dir = triton.model_dir
        settings = _settings(
            args,
            triton_url=triton.grpc_url,
            tokenizer=args.tokenizer or model_dir,
            served_model_name=args.served_model_name or served_model_name(args.family),
        )
        url = f"http://{settings.host}:{settings.port}"
        body = f'{{"model": "{settings.model_name()}", "messages": [{{"role": "user", "content": "Hello!"}}]}}'
        banner = (
            f"trtllm-gateway ready at {url}/v1 (model {settings.model_name()}, Triton gRPC {triton.grpc_url})\n"
            f"  curl {url}/v1/chat/completions -H 'Content-Type: application/json' -d '{body}'"
        )
        return _serve(settings, banner)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="trtllm-gateway", description=__doc__)
    parser.add_argument(
        "--log-level", type=str.lower, choices=["debug", "info", "warning", "error"], help="default info"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    triton = commands.add_parser("triton", help="run the real tritonserver on triton_repo/dev (CPU)")
    _add_triton_arguments(triton)
    triton.set_defaults(handler=run_triton)
    serve = commands.add_parser("serve", help="run the gateway in front of a Triton server")
    _add_serve_arguments(serve)
    serve.set_defaults(handler=run_serve)
    dev = commands.add_parser("dev", help="run the dev Triton (CPU) and the gateway in front of it")
    _add_serve_arguments(dev)
    _add_triton_arguments(dev)
    dev.set_defaults(handler=run_dev)
    keys = commands.add_parser("keys", help="API keys for the keys file (--keys-file)")
    new_key = keys.add_subparsers(dest="keys_command", required=True).add_parser(
        "new", help="make a new key: print it once, and its keys-file entry"
    )
    add_keys_arguments(new_key)
    new_key.set_defaults(handler=run_keys_new)
    repo = commands.add_parser("repo", help="fill triton_repo/trtllm for a TensorRT-LLM engine (and build one)")
    add_repo_arguments(repo)
    repo.set_defaults(handler=run_repo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `trtllm-gateway` command."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level or "info", "text")
    try:
        return int(args.handler(args))
    except ConfigurationError as exc:
        print(f"trtllm-gateway: {exc}", file=sys.stderr)
        return 2
