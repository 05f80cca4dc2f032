"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gateway.api.state import registry_of

router = APIRouter(tags=["OpenAI"])


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    """The served models."""
    return {"object": "list", "data": registry_of(request).cards()}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, object]:
    """One served model (404 with an OpenAI error body if unknown)."""
    return registry_of(request).get(model_id).card() | {"id": model_id}
