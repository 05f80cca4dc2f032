"""The OpenAPI document as the gateway behaves: invalid requests get a 400 with an OpenAI error body, not 422."""

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


def install_openapi(app: FastAPI) -> None:
    """Serve an OpenAPI document whose error responses are the ones the gateway sends."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            app.openapi_schema = with_openai_errors(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_openai_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace FastAPI's 422 validation responses by the gateway's 400 OpenAI error response."""
    error_ref = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses["400"] = {
                    "description": "Invalid request (OpenAI error body)",
                    "content": {"application/json": {"schema": error_ref}},
                }
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        components.pop(name, None)
    components[ERROR_SCHEMA_NAME] = ERROR_SCHEMA
    return schema
