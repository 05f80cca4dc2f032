"""The route class of the generation endpoints: their JSON body validated by pydantic straight from the bytes."""

from __future__ import annotations

import codecs
from functools import cached_property
from typing import get_type_hints

from fastapi import HTTPException, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from gateway.api.request_body import replaying
from gateway.errors import InvalidRequestError


def is_json_media_type(content_type: str | None) -> bool:
    """`application/json` or `application/*+json`, parameters ignored: what FastAPI parses as JSON."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    main_type, _, subtype = media_type.partition("/")
    return main_type == "application" and (subtype == "json" or subtype.endswith("+json"))


def require_utf8(raw: bytes) -> None:
    """JSON bodies are UTF-8 without a byte order mark (RFC 8259 §8.1); anything else is a 400 `invalid_json`.

    FastAPI's parser (json.loads) also reads UTF-16 and UTF-32 and skips a BOM, so a proxy that inspects the body
    as UTF-8 would see something other than what the gateway reads. A UTF-8 BOM is refused too: senders must not
    add one (§8.1), and a UTF-8 JSON inspector that fails on it would pass the body on unread.
    """
    problem = None
    if raw.startswith(codecs.BOM_UTF8):
        problem = "starts with a byte order mark"
    else:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = f"is not UTF-8 (byte {exc.start})"
    if problem is not None:
        raise InvalidRequestError(
            f"The request body {problem}: send JSON as UTF-8, without a byte order mark (RFC 8259, section 8.1).",
            code="invalid_json",
        )


class JsonBodyRoute(APIRoute):
    """A POST endpoint `(body: Model, request: Request) -> Response` whose JSON body is one `model_validate_json`.

    FastAPI's own path parses the JSON, solves the endpoint's dependencies to validate it, and wraps the call in
    two exit stacks and an exception-handling layer: more CPU than the rest of a request's Python, and memory
    that a held stream keeps. Here the route calls the endpoint and its response itself; exceptions reach the
    app's exception handlers as they would from FastAPI's wrapper. A body that fails here, or is not sent as JSON,
    goes to FastAPI's own handler (given the body again), so every error a client sees is FastAPI's, word for
    word (except for JSON that is not UTF-8: see `require_utf8`); the OpenAPI document still comes from the
    endpoint's signature.
    """

    @cached_property
    def _body_model(self) -> type[BaseModel]:
        model: type[BaseModel] = get_type_hints(self.endpoint)["body"]
        return model

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Validate and answer, or hand the request to FastAPI's handler."""
        request = Request(scope, receive, send)
        if scope["method"] != "POST" or not is_json_media_type(request.headers.get("content-type")):
            await super().handle(scope, receive, send)
            return
        try:
            raw = await request.body()
        except ClientDisconnect:  # the body never arrived whole: FastAPI's answer, to a client that left
            raise HTTPException(status_code=400, detail="There was an error parsing the body") from None
        try:
            body = self._body_model.model_validate_json(raw)
        except ValidationError:
            require_utf8(raw)  # only here: pydantic refused anything else already
            await super().handle(scope, replaying(raw, receive), send)
            return
        response = await self.endpoint(body, request)
        del request, raw, body  # a stream keeps none of them (the prompt's text, more than once) while it runs
        await response(scope, receive, send)
