"""POST /v1/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.json_body_route import JsonBodyRoute
from gateway.api.pipeline import serve_generation
from gateway.protocols.completions.decode import completion_generation
from gateway.protocols.openai_shared import CompletionRequest

router = APIRouter(tags=["OpenAI"], route_class=JsonBodyRoute)


@router.post("/v1/completions", response_model=None)
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    """Create a completion for a prompt or a list of prompts."""
    return await serve_generation(request, body, "cmpl", completion_generation)
