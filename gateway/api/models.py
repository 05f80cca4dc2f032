"""GET /v1/models and /v1/models/{id}: OpenAI's list, or Anthropic's when the request has an `anthropic-version`
header (as Anthropic's SDKs send; Dynamo answers the same way)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from gateway.api.state import registry_of
from gateway.core.served_model import ModelRegistry, ServedModel

router = APIRouter(tags=["OpenAI"])
ANTHROPIC_VERSION_HEADER = "anthropic-version"


def model_card(model: ServedModel, name: str) -> dict[str, object]:
    """The /v1/models entry of a model under one of its names."""
    return {"id": name, "object": "model", "created": model.created, "owned_by": "trtllm-gateway"}


def anthropic_model_card(model: ServedModel, name: str) -> dict[str, object]:
    """The entry in Anthropic's shape (`ModelInfo`)."""
    created = datetime.fromtimestamp(model.created, UTC).isoformat().replace("+00:00", "Z")
    return {"type": "model", "id": name, "display_name": name, "created_at": created}


def model_cards(registry: ModelRegistry) -> list[dict[str, object]]:
    """The /v1/models entries: every name and alias."""
    return [model_card(model, name) for name, model in registry.names()]


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    """The served models."""
    registry = registry_of(request)
    if ANTHROPIC_VERSION_HEADER in request.headers:
        cards = [anthropic_model_card(model, name) for name, model in registry.names()]
        first, last = (cards[0]["id"], cards[-1]["id"]) if cards else (None, None)
        return {"data": cards, "has_more": False, "first_id": first, "last_id": last}
    return {"object": "list", "data": model_cards(registry)}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, object]:
    """One served model (404 with an error body if unknown)."""
    model = registry_of(request).get(model_id)
    if ANTHROPIC_VERSION_HEADER in request.headers:
        return anthropic_model_card(model, model_id)
    return model_card(model, model_id)
