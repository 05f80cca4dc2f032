"""`python -m bench.app_cost`: CPU of the app's own Python path per streamed token and per request, in-process.

The real app (middleware, routes, chat template, SSE) is called as an ASGI callable by a scripted engine that
yields its tokens at once, so no network, gRPC or Triton is involved: what is left is what the gateway's code
costs, the part of a token's cost that this project can change without replacing uvicorn or grpc.aio.
`--tools N` sends N agent-sized tools (distinct schemas of ~1 KB, as a coding agent sends) with every request.
`--upstream ensemble|bls|direct` puts the real TritonEngine (pool, codec, reader task, call guard) in place of the
instant engine, over an in-process stand-in for Triton's gRPC channel (bench/fake_triton.py): the engine's own
per-response Python is then measured too, still without grpc or a network.
`--request-tokens N --non-streamed --in-flight K` prices non-streamed requests of N tokens, K at a time, instead of
one-token streamed ones one at a time (with `--upstream`, the stand-in Triton answers a non-streamed call with one
response, as Triton does).
`--protocol responses` (with `store: false`, as bench.run's variant; bench.store_cost prices the store) or
`--protocol messages` streams that API instead of chat completions; a comma-separated list
(`--protocol chat,responses,messages`) measures them interleaved, round by round on the same app, and prints
each one's cost divided by the first one's (medians of the rounds' ratios); an API the gateway does not serve
(404) is left out with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fake_triton import fake_triton
from gateway.app import build_registry, create_app
from gateway.config import Settings
from gateway.core.served_model import ModelRegistry, ServedModel
from gateway.core.tokens import ChatTemplate, TokenCounter, load_tokenizer
from gateway.devstack.dev_model import DEV_MODEL_NAME, ensure_dev_model
from gateway.engine.base import Delta, EngineCapabilities, EngineInfo, GenerationRequest
from gateway.errors import GatewayError


class InstantEngine:
    """Yields `max_tokens` one-token deltas without waiting."""

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    def abort_all(self, error: GatewayError) -> int:
        """Nothing runs in the background."""
        return 0

    def info(self) -> EngineInfo:
        """Always ready."""
        return EngineInfo(upstream="instant", model="instant", ready=True)

    def capabilities(self) -> EngineCapabilities:
        """A plain ensemble: one sequence, no logprobs, no guides."""
        return EngineCapabilities(mode="ensemble")

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """One delta per token, the last one with the finish reason."""
        for index in range(request.max_tokens):
            last = index == request.max_tokens - 1
            yield Delta(
                " tok",
                completion_tokens=1,
                prompt_tokens=8 if index == 0 else None,
                finish_reason="length" if last else None,
            )


class NotServed(Exception):
    """The app answered a bench request with another status than 200."""

    def __init__(self, path: str, status: int | None, body: bytes) -> None:
        super().__init__(f"POST {path} answered {status}: {body[:300].decode(errors='replace')}")
        self.status = status


async def _request(
    app: Any, body: bytes, path: str = "/v1/chat/completions", headers: tuple[tuple[bytes, bytes], ...] = ()
) -> int:
    """One streamed request through the ASGI app (with these extra headers); returns how many messages it sent
    (NotServed unless a 200)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        # As clients send it: with a Content-Length (the gateway reads announced bodies whole first).
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            *headers,
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    finished = asyncio.Event()
    sent = 0
    status: int | None = None
    failure = bytearray()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent, status
        sent += 1
        if message["type"] == "http.response.start":
            status = message["status"]
        elif status != 200:
            failure.extend(message.get("body", b""))
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    await app(scope, receive, send)
    if status != 200:
        raise NotServed(path, status, bytes(failure))
    return sent


def agent_tools(count: int) -> list[dict[str, Any]]:
    """`count` distinct tools shaped like a coding agent's (a few typed, described arguments each)."""
    return [
        {
            "type": "function",
            "function": {
                "name": f"tool_{index}",
                "description": f"Tool {index}: runs an operation on the workspace and returns its output.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "Absolute path of the file to work on"},
                        "command": {"type": "string", "description": f"The command to run (tool {index})"},
                        "timeout": {"type": "number", "description": "Timeout in milliseconds", "maximum": 600000},
                        "mode": {"type": "string", "enum": ["read", "write", "append"]},
                        "edits": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"old": {"type": "string"}, "new": {"type": "string"}},
                                "required": ["old", "new"],
                                "additionalProperties": False,
                            },
                        },
                    },
                    "required": ["path"],
                    "additionalProperties": False,
                },
            },
        }
        for index in range(count)
    ]


def _chat_fields(messages: list[dict[str, Any]], max_tokens: int, tools: int) -> dict[str, Any]:
    extra = {"tools": agent_tools(tools)} if tools else {}
    return {"messages": messages, "max_tokens": max_tokens, **extra}


def _responses_fields(messages: list[dict[str, Any]], max_tokens: int, tools: int) -> dict[str, Any]:
    flat = [{"type": "function", **tool["function"]} for tool in agent_tools(tools)]
    extra = {"tools": flat} if tools else {}
    return {"input": messages, "max_output_tokens": max_tokens, "store": False, **extra}


def _messages_fields(messages: list[dict[str, Any]], max_tokens: int, tools: int) -> dict[str, Any]:
    anthropic = [
        {"name": tool["function"]["name"], "description": tool["function"]["description"],
         "input_schema": tool["function"]["parameters"]}
        for tool in agent_tools(tools)
    ]  # fmt: skip
    return {"messages": messages, "max_tokens": max_tokens, **({"tools": anthropic} if tools else {})}


@dataclass(frozen=True)
class Api:
    """A streamed API the bench can call: its path and its body's fields for (messages, max_tokens, tools)."""

    path: str
    fields: Callable[[list[dict[str, Any]], int, int], dict[str, Any]]

    def body(self, prompt: str, max_tokens: int, tools: int, stream: bool = True) -> bytes:
        """The request of `max_tokens` tokens for one user message, streamed unless `stream` is false."""
        fields = self.fields([{"role": "user", "content": prompt}], max_tokens, tools)
        return json.dumps({"model": DEV_MODEL_NAME, **fields, "stream": stream}).encode()


PROTOCOLS = {
    "chat": Api("/v1/chat/completions", _chat_fields),
    "responses": Api("/v1/responses", _responses_fields),
    "messages": Api("/v1/messages", _messages_fields),
}
PROMPT = " ".join(f"word{i}" for i in range(60))
UPSTREAM_MODELS = {"ensemble": "ensemble", "bls": "tensorrt_llm_bls", "direct": "tensorrt_llm"}
# What the stand-in Triton streams (one token per response), cycled: dev-tokenizer tokens of ordinary prose.
SAMPLE_TEXT = (
    "The gateway reads each response of the upstream, turns it into an event of the choice it belongs to, and "
    "writes that event to the client as soon as it arrives, unless the client is still reading the last one."
)


def instant_registry(tokenizer: Any, tools: int, max_tokens: int) -> ModelRegistry:
    """The dev model served by the instant engine."""
    model = ServedModel(
        name=DEV_MODEL_NAME,
        engine=InstantEngine(),
        chat_template=ChatTemplate(tokenizer),
        counter=TokenCounter(tokenizer),
        default_max_tokens=16,
        max_tokens_limit=max(max_tokens, 16),
        max_prompt_tokens=None,
        tool_parser="llama3_json" if tools else None,
    )
    return ModelRegistry([model])


def upstream_settings(model_dir: Path, upstream: str, tools: int, max_tokens: int) -> Settings:
    """The settings of a gateway in front of the stand-in Triton, calling the model of the upstream mode."""
    return Settings(
        tokenizer=model_dir,
        served_model_name=DEV_MODEL_NAME,
        triton_url="fake-triton:8001",
        triton_model=UPSTREAM_MODELS[upstream],
        default_max_tokens=16,
        max_tokens_limit=max(max_tokens, 16),
        tool_call_parser="llama3_json" if tools else "none",
        reasoning_parser="none",
        state_dir=Path(tempfile.mkdtemp(prefix="app-cost-state-")),
    )


@asynccontextmanager
async def serving_app(upstream: str, tools: int, max_tokens: int) -> AsyncIterator[Any]:
    """The app, started, over the instant engine or the TritonEngine and a stand-in Triton in `upstream` mode."""
    model_dir = ensure_dev_model()
    tokenizer = load_tokenizer(model_dir)
    if upstream == "instant":
        settings = Settings(state_dir=Path(tempfile.mkdtemp(prefix="app-cost-state-")))
        app = create_app(instant_registry(tokenizer, tools, max_tokens), settings)
        async with app.router.lifespan_context(app):
            yield app
        return
    ids = tokenizer.encode(SAMPLE_TEXT, add_special_tokens=False)
    with fake_triton(model_dir, [(token, tokenizer.decode([token])) for token in ids]):
        settings = upstream_settings(model_dir, upstream, tools, max_tokens)
        app = create_app(build_registry(settings), settings)
        async with app.router.lifespan_context(app):
            yield app


@dataclass(frozen=True)
class RequestShape:
    """The requests of the per-request figure: `tokens` each, streamed or not, `in_flight` at a time."""

    tokens: int = 1
    streamed: bool = True
    in_flight: int = 1

    def describe(self) -> str:
        """E.g. `one-token streamed request`."""
        size = "one-token" if self.tokens == 1 else f"{self.tokens}-token"
        at_once = f" ({self.in_flight} in flight)" if self.in_flight > 1 else ""
        return f"{size} {'streamed' if self.streamed else 'non-streamed'} request{at_once}"


async def _one_round(
    app: Any, api: Api, tokens: int, requests: int, tools: int, shape: RequestShape
) -> tuple[float, float]:
    """CPU seconds per token of one `tokens`-token stream, and per request of `shape`."""
    long_body, short_body = api.body(PROMPT, tokens, tools), api.body(PROMPT, shape.tokens, tools, shape.streamed)
    started = time.process_time()
    await _request(app, long_body, api.path)
    per_token = (time.process_time() - started) / tokens
    left = requests

    async def send_while_left() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await _request(app, short_body, api.path)

    started = time.process_time()
    await asyncio.gather(*(send_while_left() for _ in range(shape.in_flight)))
    return per_token, (time.process_time() - started) / requests


async def measure(
    tokens: int,
    requests: int,
    rounds: int,
    tools: int = 0,
    upstream: str = "instant",
    protocol: str = "chat",
    shape: RequestShape = RequestShape(),
) -> dict[str, float]:
    """Best-of-`rounds` app CPU per streamed token (one long stream) and per request of `shape`."""
    api = PROTOCOLS[protocol]
    async with serving_app(upstream, tools, max(tokens, shape.tokens)) as app:
        await _request(app, api.body(PROMPT, tokens, tools), api.path)
        samples = [await _one_round(app, api, tokens, requests, tools, shape) for _ in range(rounds)]
    return {
        "per_token_us": min(sample[0] for sample in samples) * 1e6,
        "per_request_us": min(sample[1] for sample in samples) * 1e6,
    }


async def compare(
    protocols: list[str],
    tokens: int,
    requests: int,
    rounds: int,
    tools: int = 0,
    upstream: str = "instant",
    shape: RequestShape = RequestShape(),
) -> dict[str, dict[str, Any]]:
    """The protocols measured interleaved on one app; per protocol its medians and its per-round ratios to the
    first one's (a protocol the app does not serve is given as `{"not_served": message}`)."""
    results: dict[str, dict[str, Any]] = {name: {} for name in protocols}
    async with serving_app(upstream, tools, max(tokens, shape.tokens)) as app:
        served = []
        for name in protocols:
            try:
                await _request(app, PROTOCOLS[name].body(PROMPT, tokens, tools), PROTOCOLS[name].path)
            except NotServed as error:
                if error.status != 404 or name == protocols[0]:
                    raise
                results[name]["not_served"] = str(error)
            else:
                served.append(name)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in served}
        for _ in range(rounds):
            for name in served:
                samples[name].append(await _one_round(app, PROTOCOLS[name], tokens, requests, tools, shape))
    reference = samples[served[0]]
    for name in served:
        token_ratios = [mine[0] / base[0] for mine, base in zip(samples[name], reference, strict=True)]
        request_ratios = [mine[1] / base[1] for mine, base in zip(samples[name], reference, strict=True)]
        results[name] |= {
            "per_token_us": statistics.median(sample[0] for sample in samples[name]) * 1e6,
            "per_request_us": statistics.median(sample[1] for sample in samples[name]) * 1e6,
            "per_token_ratio": sorted(token_ratios),
            "per_request_ratio": sorted(request_ratios),
        }
    return results


def _ratio_text(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.3f} ({ratios[0]:.3f}–{ratios[-1]:.3f})"


def print_comparison(
    results: dict[str, dict[str, Any]], upstream: str, rounds: int, shape: RequestShape = RequestShape()
) -> None:
    """One line per protocol: medians, and the median (range) of its per-round ratios to the first protocol."""
    first = next(iter(results))
    print(f"{upstream}: medians of {rounds} interleaved rounds; ratios to {first} per round, median (lowest–highest)")
    for name, result in results.items():
        if "not_served" in result:
            print(f"  {name}: left out, not served by this gateway ({result['not_served'][:80]})")
            continue
        ratios = (
            f"; ÷ {first}: per token {_ratio_text(result['per_token_ratio'])}, per request "
            f"{_ratio_text(result['per_request_ratio'])}"
        )
        print(
            f"  {name}: {result['per_token_us']:.2f} µs per streamed token, {result['per_request_us']:.0f} µs per "
            f"{shape.describe()}{ratios if name != first else ''}"
        )


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4000, help="tokens of the long stream (per-token cost)")
    parser.add_argument("--requests", type=int, default=500, help="requests of the per-request cost")
    parser.add_argument("--request-tokens", type=int, default=1, help="tokens of each of those requests")
    parser.add_argument(
        "--non-streamed", action="store_true", help="those requests non-streamed (the upstream answers at once)"
    )
    parser.add_argument("--in-flight", type=int, default=1, help="those requests sent this many at a time")
    parser.add_argument(
        "--rounds", type=int, default=5, help="best of this many rounds (interleaved rounds for a list)"
    )
    parser.add_argument("--tools", type=int, default=0, help="agent-sized tools sent with every request")
    parser.add_argument(
        "--upstream",
        choices=["instant", *UPSTREAM_MODELS],
        default="instant",
        help="instant: an engine that yields at once; else the TritonEngine over a stand-in Triton in this mode",
    )
    parser.add_argument(
        "--protocol",
        default="chat",
        help=f"the streamed API ({', '.join(PROTOCOLS)}), or a comma-separated list measured interleaved",
    )
    args = parser.parse_args()
    protocols = args.protocol.split(",")
    if unknown := [name for name in protocols if name not in PROTOCOLS]:
        parser.error(f"--protocol: unknown {', '.join(unknown)} (known: {', '.join(PROTOCOLS)})")
    import uvloop

    shape = RequestShape(args.request_tokens, streamed=not args.non_streamed, in_flight=args.in_flight)
    if len(protocols) > 1:
        results = uvloop.run(
            compare(protocols, args.tokens, args.requests, args.rounds, args.tools, args.upstream, shape)
        )
        print_comparison(results, args.upstream, args.rounds, shape)
        return
    result = uvloop.run(
        measure(args.tokens, args.requests, args.rounds, args.tools, args.upstream, protocols[0], shape)
    )
    print(
        f"{args.upstream} {protocols[0]}: app CPU per streamed token: {result['per_token_us']:.2f} µs; "
        f"per {shape.describe()}: {result['per_request_us']:.0f} µs (best of {args.rounds})"
    )


if __name__ == "__main__":
    main()
