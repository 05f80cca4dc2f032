"""A sweep's execution: Triton once, then each front-end in turn over every load point, Triton restarted on a crash."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.frontends import (
    RunningFrontend,
    direct_frontend,
    gateway_supports_workers,
    start_gateway,
    start_litellm,
    start_tritonfe,
    url_frontend,
)
from bench.procs import Placement
from bench.prompts import Prompt, make_prompts
from bench.runner import RunContext, execute
from bench.spec import GATEWAY_MODES, Frontend, LoadPoint, Sweep
from bench.stack import TritonStack
from bench.tritonfe import FrontendSkipped
from gateway.core.tokens import load_tokenizer as gateway_tokenizer

logger = logging.getLogger("bench")
WARMUP = LoadPoint(concurrency=4, prompt_tokens=100, output_tokens=16, stream=True, requests=8, label="warmup")


_TOOL = '{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}'
_SCHEMA = (
    '{"type": "json_schema", "json_schema": {"name": "weather", "strict": true, "schema": {"type": "object", '
    '"properties": {"city": {"type": "string"}, "celsius": {"type": "number"}}, "required": ["city", "celsius"], '
    '"additionalProperties": false}}}'
)
# Request variants: (JSON merged into the body, extra `serve` flags). `hermes`: tools offered, a tool-call parser
# configured, no markup in the (synthetic) text: what a parser costs on the plain path. `json_schema`: a strict
# response_format, checked and sent as a guide (the synthetic engine does not enforce it: the gateway's cost only).
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "logprobs": ('{"logprobs": true}', ()),
    "n2": ('{"n": 2}', ()),
    "hermes": ('{"tools": [' + _TOOL + "]}", ("--tool-call-parser", "hermes")),
    "json_schema": ('{"response_format": ' + _SCHEMA + "}", ()),
    "interval4": ("{}", ("--stream-interval", "4")),  # an event per 4 tokens: what the opt-in saves
    "calls": ("{}", ("--upstream-streams", "0")),  # a gRPC call per request: what the shared streams save
}
# Protocol variants: the same plain request through another protocol's endpoint (`responses`: POST /v1/responses
# with store false; `messages`: Anthropic's POST /v1/messages), to price a protocol per token against chat.
PROTOCOLS = ("responses", "messages")


def frontends_for(
    sweep: Sweep, kinds: set[str], baseline: str | None = None, variants: tuple[str, ...] = ()
) -> list[Frontend]:
    """The sweep's front-ends: per gateway mode its direct floor first, then the gateway per worker count (and a
    baseline version of the gateway, and request variants such as logprobs, at one worker); Triton's own OpenAI
    frontend (`tritonfe`, model `ensemble`); LiteLLM."""
    frontends: list[Frontend] = []
    for mode in sweep.gateway_modes:
        model = GATEWAY_MODES[mode]
        if "direct" in kinds:
            frontends.append(Frontend(f"direct/{model}", "direct", model))
        if "gateway" in kinds:
            frontends += [Frontend(f"gateway/{mode}/w{w}", "gateway", model, workers=w) for w in sweep.workers]
            if baseline:
                frontends.append(Frontend(f"gateway-base/{mode}/w1", "gateway", model, source=baseline))
            for variant in variants:
                name = f"gateway/{mode}/w1+{variant}"
                if variant in PROTOCOLS:
                    frontends.append(Frontend(name, "gateway", model, protocol=variant))
                    continue
                body, flags = VARIANTS[variant]
                frontends.append(Frontend(name, "gateway", model, body=body, args=flags))
    if "tritonfe" in kinds:
        frontends.append(Frontend("tritonfe", "tritonfe", "ensemble"))
    if "litellm" in kinds and sweep.litellm:
        frontends.append(Frontend("litellm", "litellm", "ensemble"))
    return frontends


def load_points_for(frontend: Frontend, sweep: Sweep, phase: str) -> list[LoadPoint]:
    """Phase `main`: the TTFT probe and the sweep's window runs. Phase `hold`: the open-stream (RSS) runs, for
    single-process ensemble front-ends (they can overload the dev Triton, so they run last, on a fresh one)."""
    if phase == "hold":
        if holds_streams(frontend) and sweep.hold_streams:
            return [LoadPoint(c, 100, sweep.output_tokens, True, label="hold") for c in sweep.hold_streams]
        return []
    points = []
    if sweep.ttft_probe_requests:
        points.append(LoadPoint(1, 100, sweep.ttft_probe_tokens, True, sweep.ttft_probe_requests, "ttft"))
    return points + sweep.load_points()


def holds_streams(frontend: Frontend) -> bool:
    """Whether the hold runs apply to this front-end."""
    single = frontend.triton_model == "ensemble" and frontend.workers == 1 and frontend.kind in ("direct", "gateway")
    return single or frontend.kind == "url"


def context(placement: Placement, work_dir: Path, model_dir: str, args: argparse.Namespace) -> RunContext:
    """The shared run settings."""
    return RunContext(
        placement=placement,
        work_dir=work_dir,
        tokenizer_file=str(Path(model_dir) / "tokenizer.json"),
        tokenizer=gateway_tokenizer(model_dir),
        streams_per_loadgen=args.streams_per_loadgen,
        extra_body=args.extra_body,
        include_usage=not args.no_usage,
    )


def _start(frontend: Frontend, stack: TritonStack | None, ctx: RunContext, args: argparse.Namespace) -> RunningFrontend:
    from gateway.devstack import free_port

    if frontend.kind == "url" or stack is None:
        return url_frontend(frontend, args.api_key)
    triton, cpus, logs = stack.server, ctx.placement.frontend, ctx.work_dir
    if frontend.kind == "direct":
        return direct_frontend(frontend, triton.grpc_url)
    if frontend.kind == "gateway":
        return start_gateway(frontend, triton.grpc_url, triton.model_dir, free_port(), cpus, logs)
    if frontend.kind == "tritonfe":  # Triton in-process: the CPUs of Triton and of a front-end together
        return start_tritonfe(frontend, stack.options(), free_port(), own_triton_cpus(ctx.placement), logs)
    return start_litellm(frontend, triton.http_url, triton.model_dir, free_port(), cpus, logs)


def own_triton_cpus(placement: Placement) -> tuple[int, ...]:
    """Where a front-end that runs Triton in its own process may run: Triton's CPUs and the front-end's (all of
    them when either is unpinned), so it has what the gateway and tritonserver have between them."""
    if not placement.triton or not placement.frontend:
        return ()
    return tuple(sorted({*placement.triton, *placement.frontend}))


def _attach(ctx: RunContext, stack: TritonStack) -> None:
    ctx.triton_grpc = stack.server.grpc_url
    ctx.triton_metrics = stack.server.metrics_url
    ctx.triton_tree = stack.tree()


class Session:
    """Runs front-ends over load points and appends each row to runs.jsonl as it finishes."""

    def __init__(
        self, args: argparse.Namespace, sweep: Sweep, ctx: RunContext, stack: TritonStack | None, out: Path
    ) -> None:
        self.args = args
        self.sweep = sweep
        self.ctx = ctx
        self.stack = stack
        self.out = out
        self.prompts: dict[int, list[Prompt]] = {}
        model_dir = str(Path(ctx.tokenizer_file).parent)
        for tokens in {100, *sweep.prompt_tokens}:
            self.prompts[tokens] = make_prompts(model_dir, tokens)
        if stack is not None:
            _attach(ctx, stack)

    def _write(self, row: dict[str, Any]) -> None:
        with (self.out / "runs.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")

    def run_main(self, frontends: list[Frontend]) -> list[dict[str, Any]]:
        """The main phase, interleaved: every front-end runs side by side (idle when not measured) and each load
        point is measured on each front-end in turn, so a floor and what is compared with it are minutes apart.
        With `--repeats N` each point goes round the front-ends N times (A B A B ...)."""
        rows: list[dict[str, Any]] = []
        running: dict[Frontend, RunningFrontend] = {}
        for frontend in frontends:
            if frontend.kind == "gateway" and frontend.workers > 1 and not gateway_supports_workers():
                note = "skipped: `python -m gateway serve` has no --workers flag yet"
                logger.warning("%s: %s", frontend.name, note)
                rows.append({"frontend": frontend.name, "label": "skipped", "note": note})
                continue
            logger.info("starting %s", frontend.name)
            try:
                running[frontend] = self._start_warm(frontend)
            except FrontendSkipped as skip:
                logger.warning("%s: skipped: %s", frontend.name, skip)
                rows.append({"frontend": frontend.name, "label": "skipped", "note": f"skipped: {skip}"})
                self._write(rows[-1])
            except Exception as exc:
                logger.error("%s did not start: %s", frontend.name, exc)
                rows.append({"frontend": frontend.name, "label": "main", "failed": f"start: {exc!r}"[:500]})
        points = [
            p
            for p in load_points_for(frontends[0], self.sweep, "main")
            if not self.args.only_label or p.label in self.args.only_label
        ]
        rounds = [(point, repeat) for point in points for repeat in range(self.args.repeats)]
        try:
            for point, repeat in rounds:
                for frontend in list(running):
                    starts = self.stack.starts if self.stack else 0
                    try:
                        row, running[frontend] = self._measure(frontend, running[frontend], point)
                    except Exception as exc:  # could not be restarted after a Triton crash
                        row = {"frontend": frontend.name, "label": point.label, "failed": repr(exc)[:500]}
                        running.pop(frontend).stop()
                    row["repeat"] = repeat
                    rows.append(row)
                    self._write(row)
                    if self.stack is not None and self.stack.starts != starts:
                        self._restart_others(running, frontend)
        finally:
            for each in running.values():
                each.stop()
        return rows

    def _restart_others(self, running: dict[Frontend, RunningFrontend], done: Frontend) -> None:
        """After Triton was restarted (new ports), restart the other front-ends against it."""
        for frontend in list(running):
            if frontend == done:
                continue
            running[frontend].stop()
            try:
                running[frontend] = self._start_warm(frontend)
            except Exception as exc:
                logger.error("%s did not restart: %s", frontend.name, exc)
                del running[frontend]

    def run_frontend(self, frontend: Frontend, phase: str = "main") -> list[dict[str, Any]]:
        """Every load point of one front-end in this phase (main or hold)."""
        if frontend.kind == "gateway" and frontend.workers > 1 and not gateway_supports_workers():
            if phase != "main":
                return []
            note = "skipped: `python -m gateway serve` has no --workers flag yet"
            logger.warning("%s: %s", frontend.name, note)
            return [{"frontend": frontend.name, "label": "skipped", "note": note}]
        points = [
            p
            for p in load_points_for(frontend, self.sweep, phase)
            if not self.args.only_label or p.label in self.args.only_label
        ]
        if not points:
            return []
        if self.stack is not None and (phase == "hold" or not self.stack.alive()):
            self.stack.restart()
            _attach(self.ctx, self.stack)
        logger.info("starting %s (%s)", frontend.name, phase)
        rows: list[dict[str, Any]] = []
        try:
            running = self._start_warm(frontend)
        except FrontendSkipped as skip:
            logger.warning("%s: skipped: %s", frontend.name, skip)
            return [{"frontend": frontend.name, "label": "skipped", "note": f"skipped: {skip}"}]
        except Exception as exc:
            logger.error("%s did not start: %s", frontend.name, exc)
            return [{"frontend": frontend.name, "label": phase, "failed": f"start: {exc!r}"[:500]}]
        try:
            for point in points:
                try:
                    row, running = self._measure(frontend, running, point)
                except Exception as exc:  # the front-end could not be restarted after a Triton crash
                    row = {"frontend": frontend.name, "label": point.label, "failed": repr(exc)[:500]}
                rows.append(row)
                self._write(row)
                if "failed" in row and "start" in row["failed"]:
                    break
        finally:
            running.stop()
        return rows

    def _start_warm(self, frontend: Frontend) -> RunningFrontend:
        """Start the front-end and warm it up; if Triton died meanwhile, restart it and try once more."""
        for attempt in range(2):
            running = _start(frontend, self.stack, self.ctx, self.args)
            try:
                execute(running, WARMUP, self.prompts[100], self.ctx, self.sweep.timing)
                return running
            except Exception:
                running.stop()
                if attempt or self.stack is None or self.stack.alive() or running.own_triton:
                    raise
                self.stack.restart()
                _attach(self.ctx, self.stack)
        raise AssertionError("unreachable")

    def _measure(
        self, frontend: Frontend, running: RunningFrontend, point: LoadPoint
    ) -> tuple[dict[str, Any], RunningFrontend]:
        """One point; when Triton dies during it, restart Triton and the front-end and measure it again."""
        crashes = 0
        frontend_crashes = 0
        if running.exited():  # the front-end itself died (LiteLLM's proxy segfaults now and then): start it again
            logger.warning("%s exited (%s); restarting it", frontend.name, running.process and running.process.poll())
            running = self._restart(frontend, running, triton=False)
        if self.stack is not None and not self.stack.alive():  # died after the previous point
            running = self._restart(frontend, running, triton=True)
        while True:
            started = time.monotonic()
            try:
                row = execute(running, point, self.prompts[point.prompt_tokens], self.ctx, self.sweep.timing)
            except Exception as exc:
                logger.error("%s %s failed: %s", frontend.name, point.key(), exc)
                row = {
                    "frontend": frontend.name,
                    "label": point.label,
                    "concurrency": point.concurrency,
                    "prompt_tokens": point.prompt_tokens,
                    "stream": point.stream,
                    "failed": repr(exc)[:500],
                }
            if running.exited() and (self.stack is None or self.stack.alive()):
                frontend_crashes += 1
                if frontend_crashes > self.args.crash_retries:
                    row["failed"] = f"{frontend.name} exited {frontend_crashes} times during this point"
                    break
                logger.warning("%s exited during %s; restarting it and measuring again", frontend.name, point.key())
                running = self._restart(frontend, running, triton=False)
                continue
            if self.stack is None or self.stack.alive():
                break
            crashes += 1
            if crashes > self.args.crash_retries:
                row["failed"] = f"tritonserver crashed {crashes} times during this point"
                break
            logger.warning("%s %s: Triton crashed; restarting it and the front-end", frontend.name, point.key())
            running = self._restart(frontend, running, triton=True)
        row["triton_crashes"] = crashes
        row["frontend_crashes"] = frontend_crashes
        logger.info("%s %s %s: %s (%.0f s)", frontend.name, point.label, point.key(), report.one_line(row),
                    time.monotonic() - started)  # fmt: skip
        return row, running

    def _restart(self, frontend: Frontend, running: RunningFrontend, triton: bool) -> RunningFrontend:
        """Stop the front-end, restart Triton first when `triton`, and start the front-end again, warmed up."""
        running.stop()
        if triton and self.stack is not None:
            self.stack.restart()
            _attach(self.ctx, self.stack)
        return self._start_warm(frontend)


def run_stack(
    args: argparse.Namespace, sweep: Sweep, placement: Placement, out: Path, work_dir: Path, meta: dict[str, Any]
) -> list[dict[str, Any]]:
    """The built-in comparison: synthetic Triton, direct floors, the gateway, LiteLLM."""
    rows: list[dict[str, Any]] = []
    stack = TritonStack(
        placement, work_dir, args.ttft_ms, args.itl_ms, args.max_active, args.engine_instances, args.tokens_per_response
    )
    stack.start()
    try:
        model_dir = str(args.tokenizer or stack.server.model_dir)
        session = Session(args, sweep, context(placement, work_dir, model_dir, args), stack, out)
        variants = tuple(v for v in (args.variants or "").split(",") if v)
        frontends = frontends_for(sweep, set(args.frontends.split(",")), args.baseline, variants)
        rows += session.run_main(frontends)
        for frontend in frontends:
            rows += session.run_frontend(frontend, "hold")
    finally:
        stack.stop()
        meta["triton_crashes"] = stack.crashes
    return rows


def run_url(
    args: argparse.Namespace, sweep: Sweep, placement: Placement, out: Path, work_dir: Path
) -> list[dict[str, Any]]:
    """Any OpenAI-compatible server: only the load generator runs here."""
    if args.tokenizer:
        model_dir = str(args.tokenizer)
    else:
        from gateway.devstack import default_cache_root
        from gateway.devstack.dev_model import ensure_dev_model

        model_dir = str(ensure_dev_model(default_cache_root()))
    ctx = context(Placement(loadgen=placement.loadgen), work_dir, model_dir, args)
    session = Session(args, sweep, ctx, None, out)
    frontend = Frontend("url", "url", url=args.url, model=args.model)
    return session.run_main([frontend]) + session.run_frontend(frontend, "hold")
