"""Per-request state of the dev engine: sampling settings, word lists and the rules that end a generation.

Pure Python (no Triton, no torch) so that both engines share one definition of when a request is finished.
The rules follow what the TensorRT-LLM executor does, as observed by clients:
- `end_id` ends the request and is not part of the output;
- a stop word sequence ends it and stays in the output;
- before `min_tokens` tokens exist neither `end_id` nor stop words can end it;
- `request_output_len` caps the number of new tokens.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class RequestError(ValueError):
    """A request the engine refuses; the message is sent back to the client."""


class FinishReason(enum.Enum):
    """Why a generation ended."""

    LENGTH = "length"
    END_ID = "end_id"
    STOP_WORDS = "stop_words"
    CANCELLED = "cancelled"


class Reply(Protocol):
    """Where a job's responses go (one Triton response sender, possibly shared by the items of a batch)."""

    def send(self, response: Any, item_done: bool) -> None:
        """Send one response; `item_done` marks this batch item's last response."""

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call `callback` once when the client cancels the request (it is polled, so it may lag a little)."""


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling settings, with TensorRT-LLM's defaults."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.0
    # TensorRT-LLM seeds every request with 0 unless told otherwise: same prompt, same output.
    seed: int = 0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    min_tokens: int = 0

    @property
    def greedy(self) -> bool:
        """Argmax decoding: temperature <= 0, top_k == 1, or neither top_k nor top_p set (TensorRT-LLM's rule)."""
        return self.temperature <= 0.0 or self.top_k == 1 or (self.top_k <= 0 and self.top_p <= 0.0)


@dataclass(frozen=True)
class OutputSpec:
    """Which outputs the client asked for and which optional values it wants in them."""

    names: frozenset[str]
    log_probs: bool = False
    num_input_tokens: bool = False
    num_output_tokens: bool = False
    perf_metrics: bool = False
    generation_logits: bool = False
    context_logits: bool = False
    batch_size: int = 1


def parse_word_list(tokens: Sequence[int], offsets: Sequence[int], name: str) -> list[list[int]]:
    """Turn TensorRT-LLM's word-list layout (flat ids, cumulative end offsets padded with -1) into id lists."""
    words: list[list[int]] = []
    start = 0
    for index, end in enumerate(offsets):
        if end == -1:
            if any(later != -1 for later in offsets[index + 1 :]):
                raise RequestError(f"{name}: offsets may be padded with -1 only at the end: {list(offsets)}")
            break
        if end > len(tokens):
            raise RequestError(f"{name}: offset {end} is past the {len(tokens)} ids: {list(offsets)}")
        if end < start or (index > 0 and end == start):
            raise RequestError(f"{name}: offsets must be increasing: {list(offsets)}")
        if end > start:
            words.append([int(t) for t in tokens[start:end]])
        start = end
    return words


@dataclass(eq=False)
class GenerationJob:
    """One sequence to generate (one batch item of a Triton request) and its progress."""

    request_id: str
    prompt: list[int]
    max_new_tokens: int
    streaming: bool
    exclude_input: bool
    sampling: SamplingParams
    outputs: OutputSpec
    reply: Reply
    end_id: int | None = None
    stop_words: list[list[int]] = field(default_factory=list)
    bad_words: list[list[int]] = field(default_factory=list)
    embedding_bias: Any = None
    batch_index: int = 0
    sequence_index: int = 0
    guide: tuple[str, str] | None = None  # (guided_decoding_guide_type, guided_decoding_guide)
    prompt_table: Any = None  # [rows, hidden]: what prompt ids vocab_size + row stand for (images)
    grammar: Any = None  # the compiled guide, when the engine enforces it
    generated: list[int] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)
    # Set from Triton's execute thread by a `stop` request; read by the engine thread.
    stop_requested: bool = False
    admitted: bool = False
    done: bool = False
    arrival_ns: int = field(default_factory=time.time_ns)
    first_scheduled_ns: int = 0
    first_token_ns: int = 0
    last_token_ns: int = 0
    lora_task_id: int | None = None
    lora_weights: bool = False  # the request carried the adapter's weights and config
    kv_reused_blocks: int = 0  # prompt blocks found in the prefix cache (synthetic engine)
    kv_prompt_blocks: int = 0
    # Raw logits, when the client asked for them: each generated token's row until it is sent, and the
    # prompt's rows ([prompt length, vocab]) until the first response carries them.
    pending_logits: list[Any] = field(default_factory=list)
    context_logits: Any = None

    def take_generation_logits(self, count: int) -> Any:
        """The logits rows of the next `count` tokens to be sent ([count, vocab] float32)."""
        import numpy as np

        rows, self.pending_logits = self.pending_logits[:count], self.pending_logits[count:]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)

    @property
    def below_min_tokens(self) -> bool:
        """Whether end_id and stop words are still held off by `min_tokens`."""
        return len(self.generated) < self.sampling.min_tokens

    def tail(self, length: int) -> list[int]:
        """The last `length` ids of prompt + generated tokens."""
        if length <= len(self.generated):
            return self.generated[len(self.generated) - length :]
        return (self.prompt + self.generated)[-length:]

    def banned_token_ids(self) -> set[int]:
        """Ids that must not come next: the last id of each bad word whose prefix ends the sequence, and
        end_id while `min_tokens` is not reached."""
        banned: set[int] = set()
        for word in self.bad_words:
            if len(word) == 1 or self.tail(len(word) - 1) == word[:-1]:
                banned.add(word[-1])
        if self.end_id is not None and self.below_min_tokens:
            banned.add(self.end_id)
        return banned

    def add_token(self, token: int, log_prob: float) -> FinishReason | None:
        """Record a sampled token and say whether the job is finished (an end_id is not recorded)."""
        now = time.time_ns()
        self.first_token_ns = self.first_token_ns or now
        self.last_token_ns = now
        if token == self.end_id and not self.below_min_tokens:
            return FinishReason.END_ID
        self.generated.append(token)
        self.log_probs.append(log_prob)
        if not self.below_min_tokens:
            for word in self.stop_words:
                if self.generated[-1] == word[-1] and self.tail(len(word)) == word:
                    return FinishReason.STOP_WORDS
        if len(self.generated) >= self.max_new_tokens:
            return FinishReason.LENGTH
        return None

    def output_tokens(self) -> list[int]:
        """Everything a non-streaming response carries: the prompt (unless excluded) and the new tokens."""
        return self.generated if self.exclude_input else self.prompt + self.generated
