"""`python -m bench.app_cost`: CPU of the app's own Python path per streamed token and per request, in-process.

The real app (middleware, routes, chat template, SSE) is called as an ASGI callable by a scripted engine that
yields its tokens at once, so no network, gRPC or Triton is involved: what is left is what the gateway's code
costs, the part of a token's cost that this project can change without replacing uvicorn or grpc.aio.
`--tools N` sends N agent-sized tools (distinct schemas of ~1 KB, as a coding agent sends) with every request.
`--protocol messages` or `--protocol responses` streams Anthropic Messages (/v1/messages) or POST /v1/responses
(named events) instead of chat completions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.app import create_app
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


PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}


async def _request(app: Any, body: bytes, path: str = PATHS["chat"]) -> int:
    """One streamed request (a chat completion by default) through the ASGI app; returns how many messages it
    sent."""
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


def messages_tools(count: int) -> list[dict[str, Any]]:
    """The same tools in Messages' shape."""
    return [
        {"name": tool["function"]["name"], "description": tool["function"]["description"],
         "input_schema": tool["function"]["parameters"]}
        for tool in agent_tools(count)
    ]  # fmt: skip


def responses_tools(count: int) -> list[dict[str, Any]]:
    """The same tools in Responses' flat shape."""
    return [{"type": "function", **tool["function"]} for tool in agent_tools(count)]


async def measure(tokens: int, requests: int, rounds: int, tools: int = 0, protocol: str = "chat") -> dict[str, float]:
    """Best-of-`rounds` app CPU per streamed token (one long stream) and per one-token streamed request."""
    tokenizer = load_tokenizer(ensure_dev_model())
    model = ServedModel(
        name=DEV_MODEL_NAME,
        engine=InstantEngine(),
        chat_template=ChatTemplate(tokenizer),
        counter=TokenCounter(tokenizer),
        default_max_tokens=16,
        max_tokens_limit=max(tokens, 16),
        max_prompt_tokens=None,
        tool_parser="llama3_json" if tools else None,
    )
    app = create_app(ModelRegistry([model]), Settings(state_dir=Path(tempfile.mkdtemp(prefix="app-cost-state-"))))
    prompt = " ".join(f"word{i}" for i in range(60))

    def body(max_tokens: int) -> bytes:
        messages = [{"role": "user", "content": prompt}]
        if protocol == "responses":
            extra: dict[str, Any] = {"tools": responses_tools(tools)} if tools else {}
            fields = {"input": messages, "max_output_tokens": max_tokens}
        else:
            extra = {"tools": (messages_tools if protocol == "messages" else agent_tools)(tools)} if tools else {}
            fields = {"messages": messages, "max_tokens": max_tokens}
        return json.dumps({"model": DEV_MODEL_NAME, **fields, "stream": True, **extra}).encode()

    path = PATHS[protocol]

    async with app.router.lifespan_context(app):
        long_body, short_body = body(tokens), body(1)
        await _request(app, long_body, path)
        per_token, per_request = [], []
        for _ in range(rounds):
            started = time.process_time()
            await _request(app, long_body, path)
            per_token.append((time.process_time() - started) / tokens)
            started = time.process_time()
            for _ in range(requests):
                await _request(app, short_body, path)
            per_request.append((time.process_time() - started) / requests)
    return {"per_token_us": min(per_token) * 1e6, "per_request_us": min(per_request) * 1e6}


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4000, help="tokens of the long stream (per-token cost)")
    parser.add_argument("--requests", type=int, default=500, help="one-token requests (per-request cost)")
    parser.add_argument("--rounds", type=int, default=5, help="best of this many rounds")
    parser.add_argument("--tools", type=int, default=0, help="agent-sized tools sent with every request")
    parser.add_argument("--protocol", choices=sorted(PATHS), default="chat", help="the streamed API (default chat)")
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(measure(args.tokens, args.requests, args.rounds, args.tools, args.protocol))
    print(
        f"app CPU per streamed token: {result['per_token_us']:.2f} µs; "
        f"per one-token streamed request: {result['per_request_us']:.0f} µs (best of {args.rounds})"
    )


if __name__ == "__main__":
    main()
