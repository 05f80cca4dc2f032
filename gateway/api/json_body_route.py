"""The route class of the generation endpoints: their JSON body validated by pydantic straight from the bytes."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, get_type_hints

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def is_json_media_type(content_type: str | None) -> bool:
    """`application/json` or `application/*+json`, parameters ignored: what FastAPI parses as JSON."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    main_type, _, subtype = media_type.partition("/")
    return main_type == "application" and (subtype == "json" or subtype.endswith("+json"))


class JsonBodyRoute(APIRoute):
    """An endpoint `(body: Model, request: Request) -> Response` whose JSON body is one `model_validate_json` call.

    FastAPI's handler parses the JSON, then solves the endpoint's dependencies to validate it, which costs more
    than the rest of a request's Python. A body that fails here (or is not sent as JSON) goes to FastAPI's own
    handler, so every error a client sees is FastAPI's, word for word; the OpenAPI document still comes from the
    endpoint's signature.
    """

    def get_route_handler(self) -> Handler:
        """The fast handler, falling back to FastAPI's."""
        fastapi_handler = super().get_route_handler()
        endpoint = self.endpoint
        model: type[BaseModel] = get_type_hints(endpoint)["body"]

        async def handler(request: Request) -> Response:
            if is_json_media_type(request.headers.get("content-type")):
                raw = await request.body()
                try:
                    body = model.model_validate_json(raw)
                except ValidationError:
                    return await fastapi_handler(request)  # the body is cached on the request
                response: Response = await endpoint(body, request)
                return response
            return await fastapi_handler(request)

        return handler
