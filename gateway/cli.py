"""Command line: `trtllm-gateway serve | dev | triton`. Parses arguments and hands over; nothing else."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from gateway.errors import ConfigurationError


def _add_triton_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dev Triton")
    group.add_argument("--engine", choices=["hf", "synthetic"], default="hf", help="dev engine kind")
    group.add_argument("--triton-grpc-port", type=int, default=0, help="0 = a free port")
    group.add_argument("--triton-http-port", type=int, default=0, help="0 = a free port")
    group.add_argument("--triton-metrics-port", type=int, default=0, help="0 = a free port")
    group.add_argument("--synthetic-ttft-ms", type=float, default=20.0)
    group.add_argument("--synthetic-itl-ms", type=float, default=5.0)
    group.add_argument("--triton-log-verbose", type=int, default=0)


def _triton_ports(args: argparse.Namespace):
    from gateway.devstack import TritonPorts, free_port

    return TritonPorts(
        grpc=args.triton_grpc_port or free_port(),
        http=args.triton_http_port or free_port(),
        metrics=args.triton_metrics_port or free_port(),
    )


def _dev_options(args: argparse.Namespace):
    from gateway.devstack import DevStackOptions

    return DevStackOptions(
        engine=args.engine, synthetic_ttft_ms=args.synthetic_ttft_ms, synthetic_itl_ms=args.synthetic_itl_ms
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="trtllm-gateway", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)
    triton = commands.add_parser("triton", help="run the real tritonserver on triton_repo/dev (CPU)")
    _add_triton_arguments(triton)
    triton.set_defaults(handler=run_triton)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `trtllm-gateway` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except ConfigurationError as exc:
        print(f"trtllm-gateway: {exc}", file=sys.stderr)
        return 2
