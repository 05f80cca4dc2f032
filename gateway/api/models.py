"""GET /v1/models and /v1/models/{id}: the models the request's key may use, in OpenAI's list, or Anthropic's when
the request has an `anthropic-version` header (as Anthropic's SDKs send; Dynamo answers the same way)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from gateway.api.auth import api_key_of
from gateway.api.state import registry_of
from gateway.api.tenancy import served_model
from gateway.core.served_model import ModelRegistry, ServedModel
from gateway.tenants.keys import ApiKey

router = APIRouter(tags=["OpenAI"])
ANTHROPIC_VERSION_HEADER = "anthropic-version"


def model_card(model: ServedModel, name: str) -> dict[str, object]:
    """The /v1/models entry of a model under one of its names."""
    return {"id": name, "object": "model", "created": model.created, "owned_by": "trtllm-gateway"}


def anthropic_model_card(model: ServedModel, name: str) -> dict[str, object]:
    """The entry in Anthropic's shape (`ModelInfo`)."""
    created = datetime.fromtimestamp(model.created, UTC).isoformat().replace("+00:00", "Z")
    return {"type": "model", "id": name, "display_name": name, "created_at": created}


def usable_names(registry: ModelRegistry, key: ApiKey | None = None) -> list[tuple[str, ServedModel]]:
    """Every name and alias of the models `key` may use (every model without a key)."""
    return [(name, model) for name, model in registry.names() if key is None or key.may_use(model.name)]


def model_cards(registry: ModelRegistry, key: ApiKey | None = None) -> list[dict[str, object]]:
    """The /v1/models entries: every name and alias (of the models `key` may use)."""
    return [model_card(model, name) for name, model in usable_names(registry, key)]


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    """The served models the caller may use."""
    registry, key = registry_of(request), api_key_of(request.scope)
    if ANTHROPIC_VERSION_HEADER in request.headers:
        cards = [anthropic_model_card(model, name) for name, model in usable_names(registry, key)]
        first, last = (cards[0]["id"], cards[-1]["id"]) if cards else (None, None)
        return {"data": cards, "has_more": False, "first_id": first, "last_id": last}
    return {"object": "list", "data": model_cards(registry, key)}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, object]:
    """One served model (404 with an error body if unknown, or not the caller's)."""
    model = served_model(request, model_id)
    if ANTHROPIC_VERSION_HEADER in request.headers:
        return anthropic_model_card(model, model_id)
    return model_card(model, model_id)
