"""What a benchmark run is: front-ends, load points and sweeps (quick and full)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

ClientKind = Literal["openai", "triton"]
FrontendKind = Literal["direct", "gateway", "litellm", "tritonfe", "url"]
# Other OpenAI servers on the same Triton build and synthetic engine (`python -m bench.run --peers`).
PEERS = ("tritonfe", "litellm")

# Gateway --triton-model per upstream mode, and the Triton model its direct floor calls.
GATEWAY_MODES: dict[str, str] = {"ensemble": "ensemble", "bls": "tensorrt_llm_bls", "direct": "tensorrt_llm"}


@dataclass(frozen=True)
class Frontend:
    """One thing the load generator talks to."""

    name: str  # e.g. direct/ensemble, gateway/ensemble/w1, litellm, tritonfe, url
    kind: FrontendKind
    triton_model: str = "ensemble"  # the Triton model behind it (direct floor and gateway)
    workers: int = 1
    url: str = ""  # kind url: any OpenAI-compatible base URL
    model: str = ""  # kind url: the model name to send
    source: str = ""  # kind gateway: a folder holding another `gateway/` package to run (a baseline version)
    body: str = ""  # JSON object merged into every request body of this front-end (e.g. '{"logprobs": true}')
    args: tuple[str, ...] = ()  # kind gateway: extra `serve` flags (e.g. a tool-call parser)
    protocol: str = "chat"  # kind gateway: chat (completions), responses or messages

    @property
    def floor(self) -> str:
        """Name of the direct-client run this front-end's throughput and TTFT are compared with."""
        return f"direct/{self.triton_model}"


@dataclass(frozen=True)
class LoadPoint:
    """One load: concurrency, prompt length, output length, streaming or not."""

    concurrency: int
    prompt_tokens: int
    output_tokens: int
    stream: bool
    requests: int = 0  # >0: a fixed number of requests (sequential per stream) instead of a time window
    label: str = "sweep"  # sweep | ttft | hold

    def key(self) -> str:
        """Short identifier, e.g. c64-p100-o256-stream."""
        return f"c{self.concurrency}-p{self.prompt_tokens}-o{self.output_tokens}-{'stream' if self.stream else 'full'}"


@dataclass(frozen=True)
class Timing:
    """How a window run is timed (seconds)."""

    ramp_s: float = 4.0  # stream starts are spread over this
    warmup_s: float = 3.0  # after the ramp, before measuring
    measure_s: float = 15.0
    idle_timeout_s: float = 180.0  # wait this long at most for Triton to drain between runs


@dataclass(frozen=True)
class Sweep:
    """A named set of front-ends and load points."""

    name: str
    concurrencies: tuple[int, ...]
    prompt_tokens: tuple[int, ...]
    streams: tuple[bool, ...]
    output_tokens: int = 256
    ttft_probe_requests: int = 50  # sequential short requests at concurrency 1 (0: none)
    ttft_probe_tokens: int = 8
    hold_streams: tuple[int, ...] = (1024, 2000)  # open-stream/RSS runs (gateway ensemble w1 and direct)
    gateway_modes: tuple[str, ...] = ("ensemble", "bls", "direct")
    workers: tuple[int, ...] = (1, 2)
    litellm: bool = True
    timing: Timing = field(default_factory=Timing)

    def load_points(self) -> list[LoadPoint]:
        """The window runs of the sweep, in execution order."""
        return [
            LoadPoint(c, p, self.output_tokens, s)
            for p in self.prompt_tokens
            for s in self.streams
            for c in self.concurrencies
        ]


SWEEPS: dict[str, Sweep] = {
    "quick": Sweep(
        name="quick",
        concurrencies=(1, 64, 256),
        prompt_tokens=(100,),
        streams=(True,),
        ttft_probe_requests=40,
        hold_streams=(1024, 2000),
        workers=(1,),
        timing=Timing(ramp_s=3.0, warmup_s=2.0, measure_s=10.0),
    ),
    "full": Sweep(
        name="full",
        concurrencies=(1, 16, 64, 256, 1024),
        prompt_tokens=(100, 2000),
        streams=(True, False),
        workers=(1, 4),
        timing=Timing(ramp_s=5.0, warmup_s=5.0, measure_s=30.0),
    ),
}


def as_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a plain dict (for JSON)."""
    return dataclasses.asdict(obj)
