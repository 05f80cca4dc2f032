"""A model of TensorRT-LLM's KV-cache block reuse for the synthetic engine: what a router can win or lose.

Per engine instance, an LRU of prompt blocks (`block_size` tokens each, identified by the chained hash of the
prompt up to and including the block, as the real cache's block reuse matches prefixes). A new request reuses
the leading blocks that are still cached; the rest must be computed. When a request ends, the blocks of its
whole sequence (prompt and generated tokens) are cached, as TensorRT-LLM keeps them for reuse. Prefill is one
lane per instance: a request's first token comes `ttft_s` plus `prefill_s_per_token` x its uncached tokens
after the lane is free, so uncached work of other requests also delays it (a busy replica is slow to start).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    """LRU of prompt blocks with a capacity; `capacity_blocks` 0 turns reuse off."""

    def __init__(self, block_size: int, capacity_blocks: int) -> None:
        self.block_size = block_size
        self.capacity_blocks = capacity_blocks
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def admit(self, prompt: Sequence[int]) -> tuple[int, int]:
        """Cache this prompt's full blocks; returns (blocks reused, blocks in the prompt)."""
        size = self.block_size
        total = len(prompt) // size
        if self.capacity_blocks == 0:
            return 0, total
        blocks = self._blocks
        hashes = []
        previous = 0
        for index in range(total):
            previous = hash((previous, *prompt[index * size : (index + 1) * size]))
            hashes.append(previous)
        reused = next((index for index, block in enumerate(hashes) if block not in blocks), total)
        # Deepest first, so that a prefix is always more recent than its extensions: eviction takes leaves
        # first and never strands a cached block behind an evicted parent (as a radix-tree cache does).
        for block in reversed(hashes):
            blocks[block] = None
            blocks.move_to_end(block)
        while len(blocks) > self.capacity_blocks:
            blocks.popitem(last=False)
        return reused, total


class PrefillLane:
    """When each admitted request gets its first token: fixed latency plus queued uncached prefill."""

    def __init__(self, ttft_s: float, prefill_s_per_token: float) -> None:
        self.ttft_s = ttft_s
        self.prefill_s_per_token = prefill_s_per_token
        self._free_at = 0.0

    def first_token_at(self, now: float, uncached_tokens: int) -> float:
        """The time of the first token of a request admitted `now` with this much prompt to compute."""
        if self.prefill_s_per_token == 0:
            return now + self.ttft_s
        start = max(now, self._free_at)
        self._free_at = start + self.prefill_s_per_token * uncached_tokens
        return self._free_at + self.ttft_s
