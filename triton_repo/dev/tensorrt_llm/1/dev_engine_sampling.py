"""Choosing the next token from a row of logits with one request's sampling settings (torch, CPU).

Order as in TensorRT-LLM's sampling path: embedding bias, temperature, penalties, banned ids (bad words and
end_id before min_tokens), then top-k / top-p. Penalties: repetition over prompt and output (as HF and
TensorRT-LLM do), presence and frequency over generated tokens only (OpenAI's definition).
The returned log probability is that of the chosen token under the final sampling distribution.
"""

from __future__ import annotations

import torch
from dev_engine_job import GenerationJob

NEG_INF = float("-inf")


def sample_token(logits: torch.Tensor, job: GenerationJob, generator: torch.Generator) -> tuple[int, float]:
    """Pick the next token for `job` from its last-position logits; returns (token id, log probability)."""
    params = job.sampling
    logits = logits.float().clone()
    if job.embedding_bias is not None:
        logits += torch.from_numpy(job.embedding_bias)
    if not params.greedy and params.temperature != 1.0:
        logits /= params.temperature
    _apply_penalties(logits, job)
    banned = [token for token in job.banned_token_ids() if 0 <= token < logits.numel()]
    if banned:
        logits[banned] = NEG_INF
    if params.greedy:
        token = int(torch.argmax(logits))
        return token, float(torch.log_softmax(logits, dim=-1)[token])
    if 0 < params.top_k < logits.numel():
        kth_largest = torch.topk(logits, params.top_k).values[-1]
        logits[logits < kth_largest] = NEG_INF
    if 0.0 < params.top_p < 1.0:
        _keep_nucleus(logits, params.top_p)
    probs = torch.softmax(logits, dim=-1)
    token = int(torch.multinomial(probs, 1, generator=generator))
    return token, float(torch.log(probs[token]))


def _apply_penalties(logits: torch.Tensor, job: GenerationJob) -> None:
    params = job.sampling
    vocab = logits.numel()
    if params.repetition_penalty != 1.0:
        seen = torch.tensor(sorted({t for t in job.prompt + job.generated if t < vocab}), dtype=torch.long)
        values = logits[seen]
        logits[seen] = torch.where(values > 0, values / params.repetition_penalty, values * params.repetition_penalty)
    if job.generated and (params.presence_penalty or params.frequency_penalty):
        generated = torch.tensor([t for t in job.generated if t < vocab], dtype=torch.long)
        counts = torch.bincount(generated, minlength=vocab).float()
        logits -= params.frequency_penalty * counts + params.presence_penalty * (counts > 0).float()


def _keep_nucleus(logits: torch.Tensor, top_p: float) -> None:
    """Mask all but the smallest set of most likely tokens whose probability reaches `top_p`."""
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    logits[order[mass_before >= top_p]] = NEG_INF


def make_generator(seed: int) -> torch.Generator:
    """A per-request random generator (TensorRT-LLM gives each request its own seeded sampler state)."""
    return torch.Generator().manual_seed(seed)
