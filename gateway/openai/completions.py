"""POST /v1/completions semantics: one generation per prompt, choices indexed by prompt."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any, TypeVar

import orjson

from gateway.engine.base import GenerationRequest
from gateway.openai.chat import DONE, sampling_params, stop_strings
from gateway.openai.generation import TextStream, sum_usage
from gateway.openai.protocol import CompletionRequest, unsupported_fields
from gateway.openai.served_model import ResponseMeta, ServedModel

T = TypeVar("T")


def completion_generation_requests(
    body: CompletionRequest, model: ServedModel, meta: ResponseMeta, trace_headers: tuple[tuple[str, str], ...] = ()
) -> list[GenerationRequest]:
    """One engine request per prompt; ids are the response id, suffixed by the prompt index when several."""
    unsupported_fields(body)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    for prompt in prompts:
        model.check_prompt_length(prompt, "prompt")
    max_tokens = model.resolve_max_tokens(body.max_tokens)
    sampling = sampling_params(body)
    stops = stop_strings(body)
    return [
        GenerationRequest(
            request_id=meta.id if len(prompts) == 1 else f"{meta.id}-{index}",
            prompt=prompt,
            max_tokens=max_tokens,
            stream=bool(body.stream),
            sampling=sampling,
            stop=stops,
            trace_headers=trace_headers,
        )
        for index, prompt in enumerate(prompts)
    ]


async def _indexed_pieces(streams: list[TextStream]) -> AsyncIterator[tuple[int, str | None]]:
    """Pieces of several streams as (index, piece), interleaved as they come; (index, None) when one ends."""
    if len(streams) == 1:
        async for piece in streams[0].pieces():
            yield 0, piece
        yield 0, None
        return
    queue: asyncio.Queue[tuple[int, str | None] | BaseException] = asyncio.Queue()

    async def pump(index: int, stream: TextStream) -> None:
        try:
            async for piece in stream.pieces():
                queue.put_nowait((index, piece))
            queue.put_nowait((index, None))
        except Exception as exc:
            queue.put_nowait(exc)

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        for _ in range(len(streams)):
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item[1] is None:
                    break
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


async def completion_chunks(
    streams: list[TextStream], meta: ResponseMeta, include_usage: bool, echo_prompts: list[str] | None
) -> AsyncGenerator[bytes, None]:
    """SSE events of a streamed completion, `[DONE]` included."""
    prefix = meta.chunk_prefix("text_completion")
    usage_null = b',"usage":null' if include_usage else b""
    for index, prompt in enumerate(echo_prompts or []):
        yield _text_chunk(prefix, index, prompt, usage_null)
    async for index, piece in _indexed_pieces(streams):
        if piece is not None:
            yield _text_chunk(prefix, index, piece, usage_null)
            continue
        finish = orjson.dumps(streams[index].finish_reason)
        yield (
            (prefix + b'"choices":[{"index":' + str(index).encode() + b',"text":"","logprobs":null,"finish_reason":')
            + finish
            + b"}]"
            + usage_null
            + b"}\n\n"
        )
    if include_usage:
        usage = sum_usage([s.usage for s in streams if s.usage is not None])
        yield prefix + b'"choices":[],"usage":' + orjson.dumps(usage.to_dict()) + b"}\n\n"
    yield DONE


def _text_chunk(prefix: bytes, index: int, text: str, usage_null: bytes) -> bytes:
    return (
        prefix
        + b'"choices":[{"index":'
        + str(index).encode()
        + b',"text":'
        + orjson.dumps(text)
        + b',"logprobs":null,"finish_reason":null}]'
        + usage_null
        + b"}\n\n"
    )


async def run_all(work: list[Coroutine[Any, Any, T]], streams: list[TextStream]) -> list[T]:
    """Run one coroutine per stream concurrently; if one fails (or all are cancelled), abandon every stream."""
    tasks = [asyncio.ensure_future(item) for item in work]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)
        raise


async def completion_response(streams: list[TextStream], meta: ResponseMeta, echo: bool) -> dict[str, Any]:
    """The body of a non-streamed completion (all prompts generated concurrently)."""
    texts = await run_all([s.collect() for s in streams], streams)
    choices = []
    for index, (stream, text) in enumerate(zip(streams, texts, strict=True)):
        full = stream.request.prompt + text if echo else text
        choices.append({"index": index, "text": full, "logprobs": None, "finish_reason": stream.finish_reason})
    usage = sum_usage([s.usage for s in streams if s.usage is not None])
    return meta.head("text_completion") | {"choices": choices, "usage": usage.to_dict()}
