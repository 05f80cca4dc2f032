"""The body of POST /v1/completions (pydantic, validated once per request), and the fields it refuses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool

from gateway.protocols.openai_shared import MAX_TOP_LOGPROBS, Int, NonEmptyStr, SamplingFields, check_unsupported


class CompletionRequest(SamplingFields):
    """Body of POST /v1/completions."""

    prompt: NonEmptyStr | Annotated[list[NonEmptyStr], Field(min_length=1, max_length=64)]
    echo: StrictBool | None = False
    # The legacy form: how many alternatives per position (0 = the chosen tokens only); false means off.
    logprobs: Annotated[Int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | Literal[False] | None = None
    suffix: Any = None


def check_completion_unsupported(request: CompletionRequest) -> None:
    """400 for the first known field whose value the gateway cannot honour."""
    check_unsupported(request, {"suffix": request.suffix})
