"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API, for Claude Code and the Anthropic SDKs.

Streams are named events with `ping` as the keep-alive; errors on these paths are in Anthropic's shape
(`MESSAGES_ERRORS`, registered for the path prefix in create_app, so middleware refusals use it too). The
`anthropic-version` and `anthropic-beta` headers are accepted: what they select is read from the body.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.errors import ErrorShape
from gateway.api.json_body_route import JsonBodyRoute
from gateway.api.pipeline import GenerationRoute, serve_generation
from gateway.api.sse import StreamStyle
from gateway.api.state import sealer_of, track_request
from gateway.api.tenancy import served_model
from gateway.core.generation import Generation
from gateway.core.planning import TraceHeaders
from gateway.core.served_model import ServedModel
from gateway.protocols.messages.decode import count_message_tokens, messages_generation
from gateway.protocols.messages.encode import PING
from gateway.protocols.messages.errors import anthropic_error_body, anthropic_status
from gateway.protocols.messages.request import CountTokensRequest, MessagesRequest
from gateway.protocols.messages.signatures import ThinkingSigner
from gateway.protocols.sealing import Sealer

MESSAGES_PATH_PREFIX = "/v1/messages"
MESSAGES_ERRORS = ErrorShape(status=anthropic_status, body=anthropic_error_body)
ANTHROPIC_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}
MESSAGES_OPENAPI_ERRORS = (MESSAGES_PATH_PREFIX, ("AnthropicError", ANTHROPIC_ERROR_SCHEMA))
MESSAGES_STREAM = StreamStyle(named=True, done=False, ping=PING)

router = APIRouter(tags=["Anthropic"], route_class=JsonBodyRoute)


@lru_cache(maxsize=4)
def messages_route(sealer: Sealer) -> GenerationRoute[MessagesRequest]:
    """The generation route of an app whose thinking is signed by `sealer` (one per app, built once)."""
    signer = ThinkingSigner(sealer)

    async def plan(
        body: MessagesRequest, model: ServedModel, request_id: str, trace_headers: TraceHeaders
    ) -> Generation:
        return await messages_generation(body, model, request_id, trace_headers, signer)

    return GenerationRoute(plan, MESSAGES_STREAM)


@router.post("/v1/messages", response_model=None)
async def create_message(body: MessagesRequest, request: Request) -> Response:
    """Create a message (streamed as server-sent events when `stream` is true)."""
    return await serve_generation(request, body, messages_route(sealer_of(request)))


@router.post("/v1/messages/count_tokens", response_model=None)
async def count_tokens(body: CountTokensRequest, request: Request) -> Response:
    """The input tokens a message request would take: its prompt as rendered for the model."""
    model = served_model(request, body.model)  # the key's, or a 404 like an unknown model
    track_request(model.name, False)
    tokens = await count_message_tokens(body, model, ThinkingSigner(sealer_of(request)))
    return Response(orjson.dumps({"input_tokens": tokens}), media_type="application/json")
