"""The `hf` dev engine: a transformers causal LM on CPU with in-flight batching.

One scheduler thread. Each step it admits waiting jobs (up to `max_num_active`), runs one batched forward
pass for all active sequences and samples each job's next token with the job's own settings and generator.
Jobs join and leave between steps, as in TensorRT-LLM's in-flight batching.

KV cache: one left-padded batched cache whose rows follow `self._rows`. Rows that finish are dropped with
`batch_select_indices`; when new jobs join, the whole batch is prefilled again (cheap for the tiny dev model,
and it only uses the public cache API). The attention mask hides the left padding; position ids count only
real tokens, so a sequence gets the same logits whatever batch it runs in (up to float rounding).

Guided decoding (dev_engine_guided): when the model parameters enable it, a request's guide masks its logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from dev_engine_core import EngineCore
from dev_engine_guided import GuidedDecoding, GuideMatcher
from dev_engine_job import GenerationJob, RequestError
from dev_engine_metrics import EngineMetrics
from dev_engine_sampling import make_generator, sample_token
from transformers import AutoModelForCausalLM


class HFEngine(EngineCore):
    """In-flight batching over a Hugging Face causal LM."""

    name = "hf"

    def __init__(
        self, model_dir: str, max_num_active: int, metrics: EngineMetrics, guided: tuple[str, str] = ("", "")
    ) -> None:
        """`guided` is (guided_decoding_backend, xgrammar_tokenizer_info_path), the model parameters."""
        super().__init__(max_num_active, metrics)
        if not model_dir or not Path(model_dir).is_dir():
            raise ValueError(f"engine 'hf' needs model_dir to be a Hugging Face model folder, got {model_dir!r}")
        # One thread: Triton, the gateway and the test client share the few cores of a dev machine.
        torch.set_num_threads(1)
        self._model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.vocab_size = int(self._model.config.vocab_size)
        self.max_positions = int(getattr(self._model.config, "max_position_embeddings", 2048))
        self._rows: list[GenerationJob] = []
        self._cache: Any = None
        self._mask = torch.zeros(0, 0, dtype=torch.long)
        self._next_position = torch.zeros(0, dtype=torch.long)
        self._generators: dict[GenerationJob, torch.Generator] = {}
        self._guided = GuidedDecoding.from_parameters(*guided, self.vocab_size)
        self._matchers: dict[GenerationJob, GuideMatcher] = {}

    def prepare(self, job: GenerationJob) -> None:
        """Refuse prompts that do not fit the model (and LoRA: the dev model has no adapters); shorten the output
        to fit, as the executor does."""
        if job.lora_task_id is not None:
            raise RequestError("the hf dev engine does not support LoRA adapters (use the synthetic engine)")
        if len(job.prompt) >= self.max_positions:
            raise RequestError(
                f"prompt length ({len(job.prompt)}) exceeds the maximum input length ({self.max_positions - 1})"
            )
        job.max_new_tokens = min(job.max_new_tokens, self.max_positions - len(job.prompt))
        if self._guided is not None and job.guide is not None:
            job.grammar = self._guided.compile(*job.guide)

    def _run(self) -> None:
        active: list[GenerationJob] = []
        while self.running:
            admitted, stopping = self._take_work(timeout=0 if active else None)
            for job in stopping:
                self._finish(job)
            for job in admitted:
                self._generators[job] = make_generator(job.sampling.seed + job.sequence_index)
                if job.grammar is not None:
                    self._matchers[job] = GuideMatcher(job.grammar)
            active = [job for job in active + admitted if not job.done]
            if active:
                self._step(active)
            for job in [job for job in self._generators if job.done]:
                del self._generators[job]
                self._matchers.pop(job, None)
            self._publish_metrics()

    def _step(self, active: list[GenerationJob]) -> None:
        """One forward pass for all active jobs, then one token each."""
        try:
            with torch.inference_mode():
                logits = self._forward(active)
        except Exception as exc:
            for job in active:
                self._fail(job, f"dev engine forward pass failed: {exc!r}")
            self._reset()
            return
        for row, job in enumerate(self._rows):
            if job.outputs.generation_logits:
                job.pending_logits.append(logits[row].numpy().copy())
            matcher = self._matchers.get(job)
            try:
                if matcher is not None:
                    matcher.mask(logits[row])
                token, log_prob = sample_token(logits[row], job, self._generators[job])
                if matcher is not None:
                    matcher.accept(token)
            except Exception as exc:
                self._fail(job, f"dev engine sampling failed: {exc!r}")
                continue
            if not self._advance(job, token, log_prob) and matcher is not None and matcher.terminated:
                self._finish(job)  # the grammar ended on a stop token that is not this request's end_id

    def _reset(self) -> None:
        self._rows, self._cache = [], None
        self._generators.clear()
        self._matchers.clear()

    def _forward(self, active: list[GenerationJob]) -> torch.Tensor:
        """Logits of the next position for every active job, in the order of `self._rows`."""
        keep = [index for index, job in enumerate(self._rows) if not job.done]
        if len(keep) < len(self._rows) and keep:
            index = torch.tensor(keep, dtype=torch.long)
            self._cache.batch_select_indices(index)
            self._mask = self._mask[index]
            self._next_position = self._next_position[index]
        self._rows = [self._rows[index] for index in keep]
        if not keep or len(self._rows) < len(active):
            return self._prefill(active)
        return self._decode()

    def _prefill(self, active: list[GenerationJob]) -> torch.Tensor:
        sequences = [job.prompt + job.generated for job in active]
        width = max(len(sequence) for sequence in sequences)
        ids = torch.zeros(len(sequences), width, dtype=torch.long)
        mask = torch.zeros(len(sequences), width, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, width - len(sequence) :] = torch.tensor(sequence, dtype=torch.long)
            mask[row, width - len(sequence) :] = 1
        positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
        out = self._model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        for row, job in enumerate(active):
            if job.outputs.context_logits and not job.generated:  # its first prefill: the prompt's logits
                job.context_logits = out.logits[row, width - len(job.prompt) :].numpy().copy()
        self._rows = list(active)
        self._cache = out.past_key_values
        self._mask = mask
        self._next_position = torch.tensor([len(sequence) for sequence in sequences], dtype=torch.long)
        return out.logits[:, -1, :]

    def _decode(self) -> torch.Tensor:
        # Every row's newest token (sampled last step) is the one not yet in the cache.
        ids = torch.tensor([[job.generated[-1]] for job in self._rows], dtype=torch.long)
        self._mask = torch.cat([self._mask, torch.ones(len(self._rows), 1, dtype=torch.long)], dim=1)
        out = self._model(
            input_ids=ids,
            attention_mask=self._mask,
            position_ids=self._next_position.unsqueeze(1),
            past_key_values=self._cache,
            use_cache=True,
        )
        self._next_position = self._next_position + 1
        self._cache = out.past_key_values
        return out.logits[:, -1, :]
