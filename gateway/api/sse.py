"""Server-sent events framing: pre-serialised chunks out, errors after the first byte as an event + `[DONE]`.

The events are written from the request's own task while a watcher listens for the disconnect (Starlette's
StreamingResponse does that only for ASGI < 2.4; with 2.4 a disconnect is noticed at the next write, which may
be far away when the upstream is slow). A disconnect cancels the writing, which runs the `finally` blocks of the
chunk generators: they close the engine stream and stop the upstream.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.api.disconnect import left_on_disconnect
from gateway.api.errors import error_event, note_error
from gateway.errors import ClientDisconnectedError, GatewayError
from gateway.openai.chat import DONE

logger = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class SSEResponse(StreamingResponse):
    """A text/event-stream response that stops producing as soon as the client disconnects."""

    def __init__(self, events: AsyncGenerator[bytes, None]) -> None:
        super().__init__(events, media_type="text/event-stream", headers=SSE_HEADERS)
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with left_on_disconnect(receive):
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                await self._write_events(send)
        except (ClientDisconnectedError, OSError):  # OSError: the client went away while we were writing
            pass
        finally:
            await self._events.aclose()

    async def _write_events(self, send: Send) -> None:
        try:
            async for event in self._events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        except GatewayError as exc:
            logger.warning("stream failed: %s", exc.message)
            note_error(exc)
            await self._write_error(send, exc)
        except Exception as exc:
            logger.exception("stream failed unexpectedly")
            note_error(exc)
            await self._write_error(send, GatewayError("The server had an error while processing your request."))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _write_error(send: Send, error: GatewayError) -> None:
        await send({"type": "http.response.body", "body": error_event(error), "more_body": True})
        await send({"type": "http.response.body", "body": DONE, "more_body": True})
