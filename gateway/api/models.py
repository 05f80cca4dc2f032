"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gateway.api.state import registry_of
from gateway.core.served_model import ModelRegistry, ServedModel

router = APIRouter(tags=["OpenAI"])


def model_card(model: ServedModel, name: str) -> dict[str, object]:
    """The /v1/models entry of a model under one of its names."""
    return {"id": name, "object": "model", "created": model.created, "owned_by": "trtllm-gateway"}


def model_cards(registry: ModelRegistry) -> list[dict[str, object]]:
    """The /v1/models entries: every name and alias."""
    return [model_card(model, name) for name, model in registry.names()]


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    """The served models."""
    return {"object": "list", "data": model_cards(registry_of(request))}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, object]:
    """One served model (404 with an OpenAI error body if unknown)."""
    return model_card(registry_of(request).get(model_id), model_id)
