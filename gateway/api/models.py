"""GET /v1/models and /v1/models/{id}: the models the request's key may use."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gateway.api.auth import api_key_of
from gateway.api.state import registry_of
from gateway.api.tenancy import served_model
from gateway.core.served_model import ModelRegistry, ServedModel
from gateway.tenants.keys import ApiKey

router = APIRouter(tags=["OpenAI"])


def model_card(model: ServedModel, name: str) -> dict[str, object]:
    """The /v1/models entry of a model under one of its names."""
    return {"id": name, "object": "model", "created": model.created, "owned_by": "trtllm-gateway"}


def model_cards(registry: ModelRegistry, key: ApiKey | None = None) -> list[dict[str, object]]:
    """The /v1/models entries: every name and alias (of the models `key` may use)."""
    return [model_card(model, name) for name, model in registry.names() if key is None or key.may_use(model.name)]


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    """The served models the caller may use."""
    return {"object": "list", "data": model_cards(registry_of(request), api_key_of(request.scope))}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, object]:
    """One served model (404 with an OpenAI error body if unknown, or not the caller's)."""
    return model_card(served_model(request, model_id), model_id)
