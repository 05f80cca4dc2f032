"""Liveness, readiness and version."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway import __version__
from gateway.api.errors import error_response
from gateway.api.state import registry_of
from gateway.errors import ShuttingDownError, UpstreamUnavailableError

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/health/ready", response_model=None)
async def ready(request: Request) -> Response | dict[str, object]:
    """200 when every model's upstream is ready, else 503 with an OpenAI error body."""
    if request.app.state.drain.draining:
        return error_response(ShuttingDownError("The server is shutting down."))
    infos = {m.name: m.engine.info() for m in registry_of(request).all()}
    not_ready = sorted(name for name, info in infos.items() if not info.ready)
    if not_ready:
        return error_response(UpstreamUnavailableError(f"upstream not ready for: {', '.join(not_ready)}"))
    return {"status": "ready", "models": sorted(infos)}


@router.get("/version")
async def version(request: Request) -> dict[str, object]:
    """Gateway version and what serves each model; no upstream addresses (it is open without API keys)."""
    models = {
        m.name: {
            "triton_model": info.model,
            "mode": info.mode,
            "triton_version": info.server_version,
        }
        for m in registry_of(request).all()
        for info in [m.engine.info()]
    }
    return {"version": __version__, "models": models}
