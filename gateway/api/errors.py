"""Every failure becomes an error response in the shape of the route's protocol, here only.

OpenAI's body `{"error": {"message", "type", "param", "code"}}` is the shape of every route unless a protocol's
routes declare their own (`ErrorShapes`, kept on `app.state.error_shapes`, by path prefix, so that middleware
answering before routing uses it too).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from gateway.errors import GatewayError, InvalidRequestError, NotFoundError, PayloadTooLargeError
from gateway.telemetry import current_request

logger = logging.getLogger(__name__)

INVALID_JSON_MESSAGE = "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload."
_HTTP_ERROR_TYPES = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error"}


def error_json(error: GatewayError) -> bytes:
    """The serialised error body; never fails."""
    try:
        return orjson.dumps(error.to_body())
    except TypeError:  # a lone surrogate echoed from the request: the stdlib escapes it as \\udXXX
        return json.dumps(error.to_body()).encode()


def own_status(error: GatewayError) -> int:
    """The error's own HTTP status."""
    return error.status


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """How a protocol's routes answer with an error: its status code and JSON body."""

    status: Callable[[GatewayError], int]
    body: Callable[[GatewayError], bytes]


OPENAI_ERRORS = ErrorShape(status=own_status, body=error_json)


@dataclass(frozen=True, slots=True)
class ErrorShapes:
    """The error shape of each protocol's routes by path prefix; OpenAI's for every other path."""

    by_prefix: tuple[tuple[str, ErrorShape], ...] = ()
    default: ErrorShape = OPENAI_ERRORS

    def for_path(self, path: str) -> ErrorShape:
        """The shape for a request path."""
        return next((shape for prefix, shape in self.by_prefix if path.startswith(prefix)), self.default)


def error_shape_of(scope: Scope) -> ErrorShape:
    """The error shape of the request's route (OpenAI's outside an app that declares shapes)."""
    shapes = getattr(getattr(scope.get("app"), "state", None), "error_shapes", None)
    return shapes.for_path(scope["path"]) if isinstance(shapes, ErrorShapes) else OPENAI_ERRORS


def error_response(
    error: GatewayError, headers: dict[str, str] | None = None, shape: ErrorShape = OPENAI_ERRORS
) -> Response:
    """The JSON response for a gateway error, in `shape`."""
    return Response(shape.body(error), status_code=shape.status(error), media_type="application/json", headers=headers)


def note_error(error: Exception) -> None:
    """Remember the request's error for its metrics and access line."""
    context = current_request()
    if context is not None:
        context.error = error


def _param_path(location: tuple[Any, ...]) -> str | None:
    """pydantic's ('body', 'messages', 0, 'role') -> 'messages[0].role' (and ('query', 'limit') -> 'limit')."""
    path = ""
    parts = location[1:] if location and location[0] in ("body", "query", "path") else location
    for position, part in enumerate(parts):
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("str", "list[str]", "function-after[...]") or str(part).startswith(("list[", "function-")):
            continue  # union branch names that pydantic adds to the location
        elif str(part)[:1].isupper():
            continue  # a union branch that is a model (its class name); fields are snake_case
        elif position and isinstance(parts[position - 1], int) and parts[position + 1 : position + 2] == (part,):
            continue  # a tagged union's tag before the field of the same name (a content part's "text", "image_url")
        else:
            path += f".{part}" if path else str(part)
    return path or None


def _most_specific(errors: Sequence[Any]) -> Any:
    """Of the errors about the first bad field, the one that says most: a field with alternative types (a
    string or a list of strings) gets one error per alternative, and the first is often just "not a string"."""
    first = errors[0]
    param = _param_path(tuple(first.get("loc", ())))
    if param is None:
        return first
    inside = (param + ".", param + "[")

    def about_param(error: Any) -> bool:
        path = _param_path(tuple(error.get("loc", ())))
        return path is not None and (path == param or path.startswith(inside))

    related = [e for e in errors if about_param(e)]
    constraint = [e for e in related if not str(e.get("type", "")).endswith("_type")]
    if constraint:
        return constraint[0]
    return max(related, key=lambda e: len(e.get("loc", ())))


def validation_error(exc: RequestValidationError) -> InvalidRequestError:
    """The first bad field's most specific validation problem as a 400 that names the field."""
    errors = exc.errors()
    if not errors:
        return InvalidRequestError("invalid request body")
    first = _most_specific(errors)
    if first.get("type") == "json_invalid":
        return InvalidRequestError(INVALID_JSON_MESSAGE, code="invalid_json")
    location = tuple(first.get("loc", ()))
    if location == ("body",):
        return InvalidRequestError("the request body must be a JSON object", code="invalid_json")
    param = _param_path(location)
    message = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        return InvalidRequestError(
            f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    return InvalidRequestError(f"Invalid value for '{param}': {message}", param=param, code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception an endpoint can raise to an error response in its route's shape."""

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> Response:
        note_error(exc)
        return error_response(exc, exc.headers, error_shape_of(request.scope))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(validation_error(exc), shape=error_shape_of(request.scope))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            error: GatewayError = NotFoundError(f"Unknown request URL: {request.method} {request.url.path}.")
        elif exc.status_code == 413:
            error = PayloadTooLargeError(str(exc.detail))
        elif exc.status_code == 400 and isinstance(exc.__cause__, UnicodeError):
            # FastAPI's answer to a JSON body that is not valid text: the same error as invalid JSON.
            error = InvalidRequestError(INVALID_JSON_MESSAGE + " The body is not valid UTF-8.", code="invalid_json")
        else:
            error = GatewayError(str(exc.detail))
            error.status = exc.status_code
            error.type = _HTTP_ERROR_TYPES.get(exc.status_code, "invalid_request_error")
        return error_response(error, getattr(exc, "headers", None), error_shape_of(request.scope))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        note_error(exc)
        error = GatewayError("The server had an error while processing your request.")
        return error_response(error, shape=error_shape_of(request.scope))
