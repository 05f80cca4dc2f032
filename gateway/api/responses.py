"""POST /v1/responses and POST /v1/responses/input_tokens (OpenAI's Responses API, stateless part)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.json_body_route import JsonBodyRoute
from gateway.api.response_state import turn_state
from gateway.api.responses_stateful import create_response as create_stateful_response
from gateway.api.sse import StreamStyle
from gateway.api.state import registry_of, sealer_of
from gateway.api.tenancy import served_model
from gateway.core.served_model import ServedModel
from gateway.errors import InvalidRequestError
from gateway.protocols.responses.decode import count_input_tokens
from gateway.protocols.responses.request import InputTokensRequest, ResponsesRequest

router = APIRouter(tags=["OpenAI"], route_class=JsonBodyRoute)
RESPONSES_STREAM = StreamStyle(named=True)  # `event:` lines, no [DONE], keep-alive comments as chat's


@router.post("/v1/responses", response_model=None)
async def create_response(body: ResponsesRequest, request: Request) -> Response:
    """Create a model response (streamed as server-sent events when `stream` is true)."""
    return await create_stateful_response(request, body, sealer_of(request), RESPONSES_STREAM)


@router.post("/v1/responses/input_tokens", response_model=None)
async def get_input_token_counts(body: InputTokensRequest, request: Request) -> Response:
    """Count the tokens of the prompt a response with this input, tools and instructions would render."""
    state = await turn_state(request, body)
    counted = await count_input_tokens(body, _model(request, body.model), sealer_of(request), state.history)
    return Response(orjson.dumps(counted), media_type="application/json")


def _model(request: Request, name: str | None) -> ServedModel:
    if name is not None:
        return served_model(request, name)
    served = registry_of(request).all()
    if len(served) != 1:
        raise InvalidRequestError(
            "Missing required parameter: 'model' (this gateway serves several models).",
            param="model",
            code="missing_required_parameter",
        )
    return served_model(request, served[0].name)  # the key's, or a 404
