"""Server-sent events framing: pre-serialised chunks out, errors after the first byte as an event + `[DONE]`.

The response always races the body against a disconnect listener (Starlette does that only for ASGI < 2.4; with
2.4 a disconnect is noticed at the next write, which may be far away when the upstream is slow). Cancelling the
body runs the `finally` blocks of the chunk generators, which close the engine stream and stop the upstream.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.api.errors import error_event, note_error
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
        note_error(exc)
        yield error_event(exc)
        yield DONE
    except Exception as exc:
        logger.exception("stream failed unexpectedly")
        note_error(exc)
        yield error_event(GatewayError("The server had an error while processing your request."))
        yield DONE


class SSEResponse(StreamingResponse):
    """A text/event-stream response that stops producing as soon as the client disconnects."""

    def __init__(self, events: AsyncIterator[bytes]) -> None:
        super().__init__(_guarded(events), media_type="text/event-stream", headers=SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def stream_then_stop_listening() -> None:
                with contextlib.suppress(OSError):  # the client went away while we were writing
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream_then_stop_listening)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()
