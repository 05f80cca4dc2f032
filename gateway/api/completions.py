"""POST /v1/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.json_body_route import JsonBodyRoute
from gateway.api.pipeline import GenerationRoute, serve_generation
from gateway.api.sse import OPENAI_STREAM
from gateway.protocols.completions.decode import completion_generation
from gateway.protocols.completions.request import CompletionRequest

router = APIRouter(tags=["OpenAI"], route_class=JsonBodyRoute)
COMPLETIONS = GenerationRoute(completion_generation, OPENAI_STREAM)


@router.post("/v1/completions", response_model=None)
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    """Create a completion for a prompt or a list of prompts."""
    return await serve_generation(request, body, COMPLETIONS)
