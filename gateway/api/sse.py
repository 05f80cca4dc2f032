"""Server-sent events framing: pre-serialised chunks out, errors after the first byte as an event + `[DONE]`.

Starlette's StreamingResponse cancels the body iterator when the client disconnects; the iterator's `finally`
blocks then close the engine stream, which stops the upstream generation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse

from gateway.api.errors import error_event
from gateway.errors import GatewayError
from gateway.openai.chat import DONE

logger = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _guarded(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield event
    except GatewayError as exc:
        logger.warning("stream failed: %s", exc.message)
        yield error_event(exc)
        yield DONE
    except Exception:
        logger.exception("stream failed unexpectedly")
        yield error_event(GatewayError("The server had an error while processing your request."))
        yield DONE


def sse_response(events: AsyncIterator[bytes]) -> StreamingResponse:
    """A text/event-stream response over already-framed events."""
    return StreamingResponse(_guarded(events), media_type="text/event-stream", headers=SSE_HEADERS)
