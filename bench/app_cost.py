"""`python -m bench.app_cost`: CPU of the app's own Python path per streamed token and per request, in-process.

The real app (middleware, routes, chat template, SSE) is called as an ASGI callable by a scripted engine that
yields its tokens at once, so no network, gRPC or Triton is involved: what is left is what the gateway's code
costs, the part of a token's cost that this project can change without replacing uvicorn or grpc.aio.
`--tools N` sends N agent-sized tools (distinct schemas of ~1 KB, as a coding agent sends) with every request.
`--upstream ensemble|bls|direct` puts the real TritonEngine (pool, codec, reader task, call guard) in place of the
instant engine, over an in-process stand-in for Triton's gRPC channel (bench/fake_triton.py): the engine's own
per-response Python is then measured too, still without grpc or a network.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
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


async def _request(app: Any, body: bytes) -> int:
    """One streamed chat completion through the ASGI app; returns how many messages it sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        # As clients send it: with a Content-Length (the gateway reads announced bodies whole first).
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    finished = asyncio.Event()
    sent = 0

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent
        sent += 1
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    await app(scope, receive, send)
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
    )


async def measure(
    tokens: int, requests: int, rounds: int, tools: int = 0, upstream: str = "instant"
) -> dict[str, float]:
    """Best-of-`rounds` app CPU per streamed token (one long stream) and per one-token streamed request."""
    model_dir = ensure_dev_model()
    tokenizer = load_tokenizer(model_dir)
    if upstream == "instant":
        app = create_app(instant_registry(tokenizer, tools, tokens), Settings())
        async with app.router.lifespan_context(app):
            return await _rounds(app, tokens, requests, rounds, tools)
    ids = tokenizer.encode(SAMPLE_TEXT, add_special_tokens=False)
    with fake_triton(model_dir, [(token, tokenizer.decode([token])) for token in ids]):
        settings = upstream_settings(model_dir, upstream, tools, tokens)
        app = create_app(build_registry(settings), settings)
        async with app.router.lifespan_context(app):
            return await _rounds(app, tokens, requests, rounds, tools)


async def _rounds(app: Any, tokens: int, requests: int, rounds: int, tools: int) -> dict[str, float]:
    prompt = " ".join(f"word{i}" for i in range(60))

    def body(max_tokens: int) -> bytes:
        messages = [{"role": "user", "content": prompt}]
        extra = {"tools": agent_tools(tools)} if tools else {}
        return json.dumps(
            {"model": DEV_MODEL_NAME, "messages": messages, "max_tokens": max_tokens, "stream": True, **extra}
        ).encode()

    long_body, short_body = body(tokens), body(1)
    await _request(app, long_body)
    per_token, per_request = [], []
    for _ in range(rounds):
        started = time.process_time()
        await _request(app, long_body)
        per_token.append((time.process_time() - started) / tokens)
        started = time.process_time()
        for _ in range(requests):
            await _request(app, short_body)
        per_request.append((time.process_time() - started) / requests)
    return {"per_token_us": min(per_token) * 1e6, "per_request_us": min(per_request) * 1e6}


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4000, help="tokens of the long stream (per-token cost)")
    parser.add_argument("--requests", type=int, default=500, help="one-token requests (per-request cost)")
    parser.add_argument("--rounds", type=int, default=5, help="best of this many rounds")
    parser.add_argument("--tools", type=int, default=0, help="agent-sized tools sent with every request")
    parser.add_argument(
        "--upstream",
        choices=["instant", *UPSTREAM_MODELS],
        default="instant",
        help="instant: an engine that yields at once; else the TritonEngine over a stand-in Triton in this mode",
    )
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(measure(args.tokens, args.requests, args.rounds, args.tools, args.upstream))
    print(
        f"{args.upstream}: app CPU per streamed token: {result['per_token_us']:.2f} µs; "
        f"per one-token streamed request: {result['per_request_us']:.0f} µs (best of {args.rounds})"
    )


if __name__ == "__main__":
    main()
