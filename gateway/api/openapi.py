"""The OpenAPI document as the gateway behaves: invalid requests get a 400 with the route's error body (OpenAI's,
or the one a protocol's routes declare, such as Anthropic's on /v1/messages), not 422."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA_NAME = "OpenAIError"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


# path prefix -> (schema name, JSON schema) of the error bodies of a protocol whose errors are not OpenAI's
ErrorSchemas = tuple[tuple[str, tuple[str, dict[str, Any]]], ...]


def install_openapi(app: FastAPI, error_schemas: ErrorSchemas = ()) -> None:
    """Serve an OpenAPI document whose error responses are the ones the gateway sends."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            app.openapi_schema = with_openai_errors(schema, error_schemas)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_openai_errors(schema: dict[str, Any], error_schemas: ErrorSchemas = ()) -> dict[str, Any]:
    """Replace FastAPI's 422 validation responses by the gateway's 400 error response: OpenAI's, or the one
    `error_schemas` gives the path's prefix."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, operations in schema.get("paths", {}).items():
        name, body = next(
            (shape for prefix, shape in error_schemas if path.startswith(prefix)), (ERROR_SCHEMA_NAME, ERROR_SCHEMA)
        )
        components[name] = body
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses["400"] = {
                    "description": f"Invalid request ({name} body)",
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
                }
    for name in FASTAPI_VALIDATION_SCHEMAS:
        components.pop(name, None)
    components[ERROR_SCHEMA_NAME] = ERROR_SCHEMA
    return schema
