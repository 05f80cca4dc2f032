"""POST /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.json_body_route import JsonBodyRoute
from gateway.api.pipeline import GenerationRoute, serve_generation
from gateway.api.sse import OPENAI_STREAM
from gateway.protocols.chat_completions.decode import chat_generation
from gateway.protocols.chat_completions.request import ChatCompletionRequest

router = APIRouter(tags=["OpenAI"], route_class=JsonBodyRoute)
CHAT_COMPLETIONS = GenerationRoute(chat_generation, OPENAI_STREAM)


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    """Create a chat completion (streamed as server-sent events when `stream` is true)."""
    return await serve_generation(request, body, CHAT_COMPLETIONS)
