"""The `synthetic` dev engine: no model, tokens on a timetable, cheap enough for thousands of streams.

Each admitted job gets its first token `ttft` after admission (plus, with the prefix-cache model of
dev_engine_prefix_cache, the time to compute its uncached prompt blocks) and one more every `itl` (or several per
response, `synthetic_tokens_per_response`, as an engine that streams in intervals does). One scheduler thread
keeps a heap of due times for all jobs. Tokens are drawn from "words" of the tokenizer's vocabulary: single
ids that decode to clean text, and a few multi-token words with non-ASCII characters, so the text is valid
UTF-8 overall while a multi-byte character is often split across responses (as with a real model).

Determinism mirrors TensorRT-LLM: the tokens depend on the prompt, and on the seed unless decoding is greedy.
Stop words, bad words, end_id, min_tokens, request_output_len, stop requests and cancellation behave as in
the `hf` engine. Log probabilities are a fixed function of the token id (`synthetic_log_prob`: there is no
distribution to take them from, but tests can check every value); logits are refused (there are none).
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import time
from pathlib import Path

from dev_engine_core import EngineCore
from dev_engine_job import GenerationJob, RequestError
from dev_engine_lora import LoraCache
from dev_engine_metrics import EngineMetrics
from dev_engine_prefix_cache import PrefillLane, PrefixCache

# Multi-byte words: split into several byte-level tokens by a BPE trained on mostly-ASCII text.
MULTI_BYTE_WORDS = (" naïve", " café", " über", " résumé", " Ελληνικά", " Привет", " 日本語", " 北京", " €", " 🙂")
MULTI_BYTE_SHARE = 0.1
FALLBACK_VOCAB_SIZE = 32000


def synthetic_log_prob(token: int) -> float:
    """The log-probability the synthetic engine reports for a token: deterministic, in (-6.1, 0]."""
    return -(token % 97) / 16


class SyntheticVocabulary:
    """The words the synthetic engine emits, as token-id sequences."""

    def __init__(self, size: int, single: list[int], multi: list[list[int]]) -> None:
        self.size = size
        self.single = single
        self.multi = multi

    @classmethod
    def load(cls, model_dir: str) -> SyntheticVocabulary:
        """From `model_dir/tokenizer.json` if present, else plain ids below the config's vocab size."""
        folder = Path(model_dir) if model_dir else None
        if folder is None or not (folder / "tokenizer.json").is_file():
            size = FALLBACK_VOCAB_SIZE
            if folder is not None and (folder / "config.json").is_file():
                size = int(json.loads((folder / "config.json").read_text()).get("vocab_size", size))
            return cls(size, list(range(size)), [])
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        special = {index for index, token in tokenizer.get_added_tokens_decoder().items() if token.special}
        texts = tokenizer.decode_batch([[index] for index in range(size)], skip_special_tokens=False)
        single = [
            index
            for index, text in enumerate(texts)
            if index not in special and text.strip() and text.isprintable() and "\ufffd" not in text
        ]
        multi = []
        for word in MULTI_BYTE_WORDS:
            ids = tokenizer.encode(word, add_special_tokens=False).ids
            if ids and not special.intersection(ids) and tokenizer.decode(ids) == word:
                multi.append(ids)
        return cls(size, single or [i for i in range(size) if i not in special], multi)

    def pick(self, rng: random.Random) -> list[int]:
        """One word's ids."""
        if self.multi and rng.random() < MULTI_BYTE_SHARE:
            return rng.choice(self.multi)
        return [rng.choice(self.single)]


class _Stream:
    """A job's position in its synthetic text."""

    __slots__ = ("job", "pending", "rng")

    def __init__(self, job: GenerationJob) -> None:
        self.job = job
        seed = 0 if job.sampling.greedy else job.sampling.seed
        # Seeding with a str hashes it with SHA-512: the same on every run, unlike hash(). Sampled return
        # sequences differ from each other; greedy ones are the same text.
        sequence = f"{job.sequence_index}/" if job.sequence_index and not job.sampling.greedy else ""
        adapter = f"lora{job.lora_task_id}/" if job.lora_task_id is not None else ""  # each adapter writes its own text
        self.rng = random.Random(f"{adapter}{sequence}{seed}:{','.join(map(str, job.prompt))}")
        self.pending: list[int] = []

    def next_token(self, vocabulary: SyntheticVocabulary) -> int:
        """The next id; a word that would produce a banned id is abandoned for another word."""
        job = self.job
        check = bool(job.bad_words) or (job.end_id is not None and job.below_min_tokens)
        banned = job.banned_token_ids() if check else ()
        for _ in range(16):
            if not self.pending:
                self.pending = list(reversed(vocabulary.pick(self.rng)))
            token = self.pending.pop()
            if token not in banned:
                return token
            self.pending.clear()
        return next(token for token in vocabulary.single if token not in banned)


class SyntheticEngine(EngineCore):
    """Timed pseudo-random tokens for any number of concurrent jobs."""

    takes_prompt_tables = True  # image rows are prompt ids like any other to it

    name = "synthetic"

    def __init__(
        self,
        model_dir: str,
        ttft_s: float,
        itl_s: float,
        max_num_active: int,
        metrics: EngineMetrics,
        tokens_per_response: int = 1,
        prefix_cache: PrefixCache | None = None,
        prefill_s_per_token: float = 0.0,
        lora_cache_adapters: int = 4,
    ) -> None:
        super().__init__(max_num_active, metrics)
        self._loras = LoraCache(lora_cache_adapters)
        self._prefix_cache = prefix_cache or PrefixCache(block_size=64, capacity_blocks=0)
        self._lane = PrefillLane(ttft_s, prefill_s_per_token)
        self._tokens_per_response = max(1, tokens_per_response)
        self._vocabulary = SyntheticVocabulary.load(model_dir)
        self.vocab_size = self._vocabulary.size
        self._ttft_s = ttft_s
        self._itl_s = itl_s
        self._heap: list[tuple[float, int, _Stream]] = []
        self._order = itertools.count()

    def prepare(self, job: GenerationJob) -> None:
        """Refuse logits: the synthetic engine has no model to take them from."""
        if job.outputs.generation_logits or job.outputs.context_logits:
            raise RequestError("the synthetic dev engine does not return logits (return_*_logits)")
        if job.lora_task_id is not None:
            self._loras.use(job.lora_task_id, job.lora_weights)

    def _run(self) -> None:
        while self.running:
            timeout = max(0.0, self._heap[0][0] - time.monotonic()) if self._heap else None
            admitted, stopping = self._take_work(timeout)
            now = time.monotonic()
            for job in stopping:
                self._finish(job)
            for job in admitted:
                job.kv_reused_blocks, job.kv_prompt_blocks = self._prefix_cache.admit(job.prompt)
                uncached = len(job.prompt) - job.kv_reused_blocks * self._prefix_cache.block_size
                first_token_at = self._lane.first_token_at(now, uncached)
                heapq.heappush(self._heap, (first_token_at, next(self._order), _Stream(job)))
            while self._heap and self._heap[0][0] <= now:
                due, _, stream = heapq.heappop(self._heap)
                if not stream.job.done:
                    self._emit(stream, due)
            self._publish_metrics()

    def _retire(self, job: GenerationJob) -> None:
        # A finished sequence's blocks stay reusable, generated tokens included (the next turn of a chat).
        self._prefix_cache.admit(job.prompt + job.generated)
        super()._retire(job)

    def _reset(self) -> None:
        self._heap.clear()

    def _emit(self, stream: _Stream, due: float) -> None:
        job = stream.job

        def sample() -> tuple[int, float]:
            token = stream.next_token(self._vocabulary)
            return token, synthetic_log_prob(token)

        if not self._advance_many(job, sample, self._tokens_per_response):
            # When the loop falls behind, the next token is due now but waits for the next pass, so every
            # stream keeps moving instead of one stream catching up in a burst.
            next_due = max(due + self._itl_s, time.monotonic())
            heapq.heappush(self._heap, (next_due, next(self._order), stream))
