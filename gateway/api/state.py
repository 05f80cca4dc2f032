"""Typed access to what the app keeps on `app.state` (set once in create_app)."""

from __future__ import annotations

from fastapi import Request

from gateway.openai.served_model import ModelRegistry


def registry_of(request: Request) -> ModelRegistry:
    """The served models."""
    registry: ModelRegistry = request.app.state.registry
    return registry
