"""POST /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.json_body_route import JsonBodyRoute
from gateway.api.pipeline import serve_generation
from gateway.protocols.chat_completions.decode import chat_generation
from gateway.protocols.openai_shared import ChatCompletionRequest

router = APIRouter(tags=["OpenAI"], route_class=JsonBodyRoute)


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    """Create a chat completion (streamed as server-sent events when `stream` is true)."""
    return await serve_generation(request, body, "chatcmpl", chat_generation)
