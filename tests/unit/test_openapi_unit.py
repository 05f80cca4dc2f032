"""The served OpenAPI document describes the errors the gateway really sends (400 + OpenAI body, never 422)."""

from __future__ import annotations

import httpx
import jsonschema

from gateway.devstack.dev_model import DEV_MODEL_NAME


async def test_invalid_requests_are_documented_as_400_with_an_openai_error_body(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "422" not in document["paths"]["/v1/chat/completions"]["post"]["responses"]
    error = document["paths"]["/v1/chat/completions"]["post"]["responses"]["400"]
    assert error["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OpenAIError"}
    assert "HTTPValidationError" not in document["components"]["schemas"]

    sent = await client.post("/v1/chat/completions", json={"model": DEV_MODEL_NAME, "messages": "not a list"})
    assert sent.status_code == 400
    jsonschema.validate(sent.json(), document["components"]["schemas"]["OpenAIError"])


async def test_every_documented_response_code_is_one_the_gateway_uses(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operations = [op for path in document["paths"].values() for op in path.values()]
    codes = {code for op in operations for code in op["responses"]}
    assert codes <= {"200", "400"}, codes


async def test_messages_routes_are_documented_with_anthropics_error_body(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        error = document["paths"][path]["post"]["responses"]["400"]
        assert error["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AnthropicError"}
    sent = await client.post("/v1/messages", json={"model": DEV_MODEL_NAME, "messages": "not a list"})
    assert sent.status_code == 400
    jsonschema.validate(sent.json(), document["components"]["schemas"]["AnthropicError"])
