"""Raw logits tensors from TensorRT-LLM -> log-probabilities and the top alternatives at each position.

TensorRT-LLM returns no top-k logprobs; an engine built with `--gather_generation_logits` (or
`--gather_context_logits`) returns the raw logits, and the gateway takes the log-softmax and the top k here.
"""

from __future__ import annotations

import numpy as np

from gateway.engine.base import TopLogprob
from gateway.engine.token_text import TokenTexts


def logits_rows(raw: bytes, datatype: str, vocab_size: int) -> np.ndarray:
    """A logits tensor's contents as float32 rows of `vocab_size` ([positions, vocab])."""
    if datatype == "BF16":
        halves = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        values = halves.view(np.float32)
    else:
        values = np.frombuffer(raw, dtype=np.float16 if datatype == "FP16" else np.float32).astype(np.float32)
    return values.reshape(-1, vocab_size)


def log_softmax(rows: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (stable for large logits)."""
    shifted = rows.astype(np.float64) - rows.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def top_alternatives(row: np.ndarray, k: int, texts: TokenTexts) -> tuple[TopLogprob, ...]:
    """The k most likely tokens of one log-softmax row, most likely first."""
    if k <= 0:
        return ()
    k = min(k, row.shape[0])
    best = np.argpartition(row, -k)[-k:]
    best = best[np.argsort(row[best])[::-1]]
    alternatives = []
    for token_id in best.tolist():
        text, data = texts.get(token_id)
        alternatives.append(TopLogprob(text, data, float(row[token_id])))
    return tuple(alternatives)
