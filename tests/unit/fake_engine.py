"""A scripted Engine for unit tests: emits given text pieces, records what it was asked and whether it was closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from gateway.engine.base import Delta, EngineCapabilities, EngineInfo, GenerationRequest, TokenLogprob
from gateway.errors import GatewayError


@dataclass
class FakeEngine:
    """Emits `pieces` (one token each) then finishes; `fail_with` raises before or after `fail_after` pieces."""

    pieces: list[str] = field(default_factory=lambda: ["Hello", " world", "!"])
    prompt_tokens: int = 7
    count_tokens: bool = True
    ready: bool = True
    fail_with: GatewayError | None = None
    fail_after: int = 0
    delay_s: float = 0.0  # before each piece, to keep requests running
    capable: EngineCapabilities = field(
        default_factory=lambda: EngineCapabilities("fake", return_sequences=True, logprobs=True)
    )
    requests: list[GenerationRequest] = field(default_factory=list)
    closed_early: list[str] = field(default_factory=list)

    def capabilities(self) -> EngineCapabilities | None:
        """Scripted capabilities (None while not ready)."""
        return self.capable if self.ready else None

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    def abort_all(self, error: GatewayError) -> int:
        """Nothing runs in the background here."""
        return 0

    def info(self) -> EngineInfo:
        """Scripted readiness."""
        return EngineInfo(upstream="fake", model="fake", ready=self.ready)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        """Scripted deltas; stream or not, like the ensemble (deltas vs one full text). Several sequences
        interleave piece by piece; logprobs are -0.5 per piece when asked."""
        self.requests.append(request)
        finished = False
        try:
            emitted = self.pieces[: request.max_tokens]
            reason = "length" if len(self.pieces) >= request.max_tokens else "stop"
            if self.fail_with is not None and self.fail_after == 0:
                raise self.fail_with
            sequences = range(request.num_sequences)
            if not request.stream:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s * len(emitted))
                finished = True
                for sequence in sequences:
                    text = "".join(emitted)
                    yield Delta(text, self._count(len(emitted)), self.prompt_tokens, reason, sequence,
                                self._logprobs(request, emitted))  # fmt: skip
                return
            for index, piece in enumerate(emitted):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if self.fail_with is not None and index == self.fail_after:
                    raise self.fail_with
                last = index == len(emitted) - 1
                finished = last
                for sequence in sequences:
                    yield Delta(piece, self._count(1), self.prompt_tokens, reason if last else None, sequence,
                                self._logprobs(request, [piece]))  # fmt: skip
        finally:
            if not finished:
                self.closed_early.append(request.request_id)

    @staticmethod
    def _logprobs(request: GenerationRequest, pieces: list[str]) -> list[TokenLogprob] | None:
        return [TokenLogprob(p, p.encode(), -0.5) for p in pieces] if request.logprobs else None

    def _count(self, n: int) -> int | None:
        return n if self.count_tokens else None
