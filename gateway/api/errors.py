"""Every failure becomes an OpenAI error body `{"error": {"message", "type", "param", "code"}}`, here only."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

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


def error_response(error: GatewayError, headers: dict[str, str] | None = None) -> Response:
    """The JSON response for a gateway error."""
    return Response(error_json(error), status_code=error.status, media_type="application/json", headers=headers)


def note_error(error: Exception) -> None:
    """Remember the request's error for its metrics and access line."""
    context = current_request()
    if context is not None:
        context.error = error


def _param_path(location: tuple[Any, ...]) -> str | None:
    """pydantic's ('body', 'messages', 0, 'role') -> 'messages[0].role'."""
    path = ""
    for part in location[1:] if location and location[0] == "body" else location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("str", "list[str]", "function-after[...]") or str(part).startswith(("list[", "function-")):
            continue  # union branch names that pydantic adds to the location
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
    """Map every exception an endpoint can raise to an OpenAI error response."""

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> Response:
        note_error(exc)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        return error_response(validation_error(exc))

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
        return error_response(error, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        note_error(exc)
        return error_response(GatewayError("The server had an error while processing your request."))
