"""The synthetic dev engine's prefix-cache model: LRU block reuse and a first token that waits for prefill."""

from __future__ import annotations

import sys

from gateway.devstack.repository import triton_repo_root

sys.path.insert(0, str(triton_repo_root() / "dev" / "tensorrt_llm" / "1"))
from dev_engine_prefix_cache import PrefillLane, PrefixCache


def test_leading_cached_blocks_are_reused_and_the_least_recent_evicted() -> None:
    cache = PrefixCache(block_size=4, capacity_blocks=5)
    system = list(range(8))  # two blocks
    assert cache.admit(system + [50] * 5) == (0, 3)
    assert cache.admit(system + [50] * 4 + [60] * 4) == (3, 4)  # the earlier turn is a prefix
    assert cache.admit([99, *system]) == (0, 2)  # same blocks shifted: nothing matches from the start
    assert cache.admit(system + [50] * 4) == (3, 3)  # 6 blocks for 5 places: a leaf fell out, not the root
    assert cache.admit(system + [50] * 4 + [60] * 4) == (3, 4)  # ... the [60] one, least recently used
    assert PrefixCache(block_size=4, capacity_blocks=0).admit(system) == (0, 2)


def test_the_first_token_waits_for_queued_uncached_prefill() -> None:
    lane = PrefillLane(ttft_s=0.01, prefill_s_per_token=0.001)
    assert lane.first_token_at(1.0, 100) == 1.0 + 0.1 + 0.01
    assert lane.first_token_at(1.0, 0) == 1.1 + 0.01  # behind the first request's prefill
    assert lane.first_token_at(5.0, 10) == 5.0 + 0.01 + 0.01
    assert PrefillLane(0.02, 0.0).first_token_at(3.0, 1000) == 3.02
