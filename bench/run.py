"""`python -m bench.run --sweep quick|full`: every front-end on the same synthetic Triton; results in bench/results/.

Also `python -m bench.run --url http://host:port/v1 --model NAME --tokenizer DIR` for any OpenAI-compatible server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shlex
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import psutil

from bench import report
from bench.frontends import gateway_supports_workers
from bench.procs import Placement
from bench.session import run_stack, run_url
from bench.spec import PEERS, SWEEPS, Sweep, Timing, as_dict

logger = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--sweep", choices=sorted(SWEEPS), default="quick")
    p.add_argument("--frontends", default="direct,gateway,litellm", help="subset of direct,gateway,litellm,tritonfe")
    p.add_argument(
        "--peers",
        action="store_true",
        help="add the other OpenAI servers (Triton's own OpenAI frontend `tritonfe`, LiteLLM's proxy) to "
        "--frontends, for the side-by-side table; tritonfe needs TRITON_MIRROR and TRITON_CORE_MIRROR (see "
        "bench/README.md) and is skipped with a note without them",
    )
    p.add_argument("--modes", help="gateway upstream modes (ensemble,bls,direct); default: the sweep's")
    p.add_argument("--workers", help="gateway worker counts, e.g. 1,4; default: the sweep's")
    p.add_argument("--concurrency", help="e.g. 1,16,64; default: the sweep's")
    p.add_argument("--prompt-tokens", help="e.g. 100,2000; default: the sweep's")
    p.add_argument("--output-tokens", type=int, help="default: the sweep's (256)")
    p.add_argument("--stream", choices=["on", "off", "both"], help="default: the sweep's")
    p.add_argument("--hold", help="open-stream runs, e.g. 1024,2000 ('' for none); default: the sweep's")
    p.add_argument("--measure-s", type=float, help="measurement window per run")
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="measure each load point this often, front-ends in turn; ratios are summarised by their median",
    )
    p.add_argument("--only-label", nargs="*", help="run only these kinds of points: ttft sweep hold")
    p.add_argument("--ttft-ms", type=float, default=20.0, help="synthetic engine time to first token")
    p.add_argument("--itl-ms", type=float, default=20.0, help="synthetic engine inter-token delay")
    p.add_argument("--max-active", type=int, default=4096, help="synthetic engine in-flight capacity")
    p.add_argument(
        "--engine-instances",
        type=int,
        default=1,
        help="synthetic engine instances (processes); more lets Triton feed several gateway workers in direct "
        "mode (stop requests reach one instance, so ensemble/BLS runs should keep 1)",
    )
    p.add_argument(
        "--tokens-per-response",
        type=int,
        default=1,
        help="synthetic engine tokens per streamed response (Triton's cost is per response)",
    )
    p.add_argument("--pin", default="auto", help="auto | none | 'triton=0;frontend=1;loadgen=1'")
    p.add_argument("--streams-per-loadgen", type=int, default=1024, help="streams per load-generator process")
    p.add_argument("--crash-retries", type=int, default=3, help="re-measure a point this often if Triton dies")
    p.add_argument("--out", type=Path, help="results folder (default bench/results/<sweep>-<time>)")
    p.add_argument("--url", help="benchmark this OpenAI-compatible base URL instead of the built-in front-ends")
    p.add_argument("--model", default="trtllm-dev", help="model name for --url")
    p.add_argument("--api-key", help="bearer token for --url")
    p.add_argument("--tokenizer", help="tokenizer folder for prompts (default: the dev model)")
    p.add_argument("--extra-body", type=json.loads, help="JSON merged into every request body (e.g. ignore_eos)")
    p.add_argument("--no-usage", action="store_true", help="do not ask for stream_options.include_usage")
    p.add_argument(
        "--baseline", help="also run the gateway whose `gateway/` package is in this folder (e.g. an older commit)"
    )
    p.add_argument(
        "--variants",
        help="also run the gateway with these variants: logprobs, n2, hermes, json_schema, interval4 "
        "(`--stream-interval 4`), calls (`--upstream-streams 0`: a gRPC call per request), and the "
        "protocols responses and messages (the plain request through /v1/responses or /v1/messages)",
    )
    return p.parse_args(argv)


def frontend_kinds(frontends: str, peers: bool) -> list[str]:
    """The front-end kinds to run: `--frontends`, plus the peers with `--peers` (in order, once each)."""
    kinds = [k.strip() for k in frontends.split(",") if k.strip()]
    return list(dict.fromkeys([*kinds, *(PEERS if peers else ())]))


def _ints(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if text is None:
        return default
    return tuple(int(x) for x in text.split(",") if x.strip())


def build_sweep(args: argparse.Namespace) -> Sweep:
    """The named sweep with the command line's overrides."""
    base = SWEEPS[args.sweep]
    streams = {"on": (True,), "off": (False,), "both": (True, False)}.get(args.stream or "", base.streams)
    timing = Timing(base.timing.ramp_s, base.timing.warmup_s, args.measure_s or base.timing.measure_s)
    return Sweep(
        name=base.name,
        concurrencies=_ints(args.concurrency, base.concurrencies),
        prompt_tokens=_ints(args.prompt_tokens, base.prompt_tokens),
        streams=streams,
        output_tokens=args.output_tokens or base.output_tokens,
        ttft_probe_requests=base.ttft_probe_requests,
        ttft_probe_tokens=base.ttft_probe_tokens,
        hold_streams=_ints(args.hold, () if args.url else base.hold_streams),
        gateway_modes=tuple(args.modes.split(",")) if args.modes else base.gateway_modes,
        workers=_ints(args.workers, base.workers),
        litellm=base.litellm,
        timing=timing,
    )


def machine() -> dict[str, Any]:
    """What ran the benchmark."""
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu_model = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def source_digest(folder: Path) -> str:
    """sha256 over the Python files of a folder (which gateway code was measured; no git needed)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def recorded_command(argv: list[str], out: Path) -> str:
    """The command as meta.json and summary.md keep it: `--out` as the results folder's place in the repository
    (where a kept run lives), not this machine's path."""
    shown = list(argv)
    for index, arg in enumerate(shown):
        if arg == "--out" and index + 1 < len(shown):
            shown[index + 1] = str(Path("bench/results") / out.name)
        elif arg.startswith("--out="):
            shown[index] = f"--out=bench/results/{out.name}"
    return "python -m bench.run " + shlex.join(shown)


def main(argv: list[str] | None = None) -> int:
    """Run a sweep and write its results."""
    args = parse_args(argv)
    args.frontends = ",".join(frontend_kinds(args.frontends, args.peers))
    # Leave through the finally blocks (which stop Triton and the front-ends) on SIGTERM and SIGINT alike.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    sweep = build_sweep(args)
    placement = Placement.parse(args.pin)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"{'url' if args.url else sweep.name}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    work_dir = RESULTS / "tmp" / out.name
    work_dir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": recorded_command(argv if argv is not None else sys.argv[1:], out),
        "machine": machine(),
        "placement": placement.describe(),
        "sweep": as_dict(sweep),
        "synthetic_engine": {
            "ttft_ms": args.ttft_ms,
            "itl_ms": args.itl_ms,
            "max_active": args.max_active,
            "instances": args.engine_instances,
            "tokens_per_response": args.tokens_per_response,
        },
        "frontends": args.frontends,
        "tritonfe_mirrors": {k: bool(os.environ.get(k)) for k in ("TRITON_MIRROR", "TRITON_CORE_MIRROR")},
        "gateway_workers_flag": None if args.url else gateway_supports_workers(),
        "gateway_source_sha256": source_digest(RESULTS.parent.parent / "gateway"),
        "logs": str(work_dir.relative_to(RESULTS.parent.parent)),  # repo-relative: no machine paths in results
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    logger.info("results in %s (placement %s)", out, placement.describe())
    rows: list[dict[str, Any]] = []
    status = 0
    try:
        if args.url:
            rows = run_url(args, sweep, placement, out, work_dir)
        else:
            rows = run_stack(args, sweep, placement, out, work_dir, meta)
    except Exception:
        traceback.print_exc()
        status = 1
    finally:
        if not rows and (out / "runs.jsonl").exists():
            rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
        (out / "meta.json").write_text(json.dumps(meta, indent=1))
        report.write(out, meta, rows)
        logger.info("wrote %s", out)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
