"""Routing policies: choices, reasons, and the bounded-load guarantee of the affinity policies."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest

from gateway.engine.routing import (
    HashRing,
    LeastOutstanding,
    LoadBound,
    PowerOfTwo,
    PrefixAffinity,
    RoundRobin,
    RouteKey,
    SessionAffinity,
    block_hashes,
)


@dataclass(eq=False)
class FakeTarget:
    address: str
    in_flight: int = 0


def targets(count: int = 3) -> list[FakeTarget]:
    return [FakeTarget(f"10.0.0.{i}:8001") for i in range(count)]


def conversation(turn: int, system: int = 0, conv: int = 0, block: int = 4) -> RouteKey:
    """Block hashes of turn `turn` of a conversation: a shared system prompt, then the conversation's own tokens."""
    tokens = [7] * (system * block) + [1000 + conv] * (turn * 2 * block)
    return RouteKey(block_hashes(tokens, block))


def test_block_hashes_chain_over_full_blocks_only() -> None:
    short = block_hashes(list(range(10)), 4)
    longer = block_hashes(list(range(13)), 4)
    assert len(short) == 2 and len(longer) == 3
    assert longer[:2] == short  # a prefix of the tokens gives a prefix of the hashes
    assert block_hashes([9, *range(1, 10)], 4)[1] != short[1]  # block 1's hash depends on block 0
    assert block_hashes([1, 2, 3], 4) == ()


def test_least_outstanding_picks_the_least_loaded() -> None:
    pool = targets()
    pool[0].in_flight, pool[1].in_flight, pool[2].in_flight = 3, 1, 2
    assert LeastOutstanding().choose(pool, RouteKey()) == (pool[1], "least_outstanding")


def test_power_of_two_never_picks_the_most_loaded_of_three() -> None:
    pool = targets()
    pool[0].in_flight, pool[1].in_flight, pool[2].in_flight = 0, 5, 10
    chosen = {PowerOfTwo().choose(pool, RouteKey())[0].address for _ in range(200)}
    assert chosen == {pool[0].address, pool[1].address}


def test_round_robin_takes_each_in_turn() -> None:
    pool = targets()
    policy = RoundRobin()
    picks = [policy.choose(pool, RouteKey())[0].address for _ in range(6)]
    assert picks == sorted(t.address for t in pool) * 2


def test_the_turns_of_a_conversation_stay_on_one_upstream() -> None:
    pool = targets()
    policy = PrefixAffinity()
    first, reason = policy.choose(pool, conversation(1))
    assert reason == "prefix_miss"
    for turn in range(2, 8):
        chosen, reason = policy.choose(pool, conversation(turn))
        assert (chosen, reason) == (first, "prefix_hit")


def test_conversations_sharing_a_system_prompt_spread_and_then_stick() -> None:
    pool = targets()
    policy = PrefixAffinity()
    homes = {}
    for conv in range(9):  # each conversation holds one request in flight, as a chat client does
        chosen, _ = policy.choose(pool, conversation(1, system=8, conv=conv))
        chosen.in_flight += 1
        homes[conv] = chosen
    assert {t.address for t in homes.values()} == {t.address for t in pool}  # the bound spread them out
    for t in pool:
        t.in_flight = 0
    for conv, home in homes.items():
        chosen, reason = policy.choose(pool, conversation(2, system=8, conv=conv))
        assert (chosen, reason) == (home, "prefix_hit")


@pytest.mark.parametrize("policy_kind", ["prefix", "session"])
def test_bounded_load_holds_under_skewed_keys(policy_kind: str) -> None:
    """Zipf-distributed keys (one conversation gets most of the traffic): no upstream ever takes a request
    beyond ceil(1.25 x mean load), and every upstream gets work."""
    rng = random.Random(7)
    pool = targets(4)
    bound = LoadBound(factor=1.25, floor=1)
    prefix, session = PrefixAffinity(bound), SessionAffinity(bound)
    weights = [1 / (rank + 1) ** 1.5 for rank in range(50)]
    running: list[FakeTarget] = []
    placed = {t.address: 0 for t in pool}
    for _ in range(5000):
        if running and rng.random() < 0.5:  # requests end in random order
            running.pop(rng.randrange(len(running))).in_flight -= 1
        conv = rng.choices(range(50), weights)[0]
        limit = math.ceil(1.25 * (sum(t.in_flight for t in pool) + 1) / len(pool))
        assert bound.limit(pool) == limit
        if policy_kind == "prefix":
            chosen, _ = prefix.choose(pool, conversation(3, system=2, conv=conv))
        else:
            chosen, _ = session.choose(pool, f"session-{conv}")
        chosen.in_flight += 1
        assert chosen.in_flight <= limit
        running.append(chosen)
        placed[chosen.address] += 1
    assert min(placed.values()) > 0.1 * 5000 / len(pool)


def test_session_affinity_is_stable_and_overflows_when_full() -> None:
    pool = targets()
    policy = SessionAffinity()
    home, reason = policy.choose(pool, "chat-42")
    assert reason == "session"
    assert all(policy.choose(pool, "chat-42")[0] is home for _ in range(10))
    home.in_flight = 10  # far above 1.25x the mean
    chosen, reason = policy.choose(pool, "chat-42")
    assert chosen is not home and reason == "session_overflow"


def test_prefix_overflow_when_the_warm_upstream_is_full() -> None:
    pool = targets()
    policy = PrefixAffinity()
    home, _ = policy.choose(pool, conversation(1))
    home.in_flight = 5
    chosen, reason = policy.choose(pool, conversation(2))
    assert chosen is not home and reason == "prefix_overflow"


def test_prompts_shorter_than_a_block_go_to_the_least_loaded() -> None:
    pool = targets()
    pool[0].in_flight, pool[1].in_flight, pool[2].in_flight = 2, 0, 1
    assert PrefixAffinity().choose(pool, RouteKey(())) == (pool[1], "prefix_short")


def test_the_ring_moves_only_the_removed_upstreams_keys() -> None:
    pool = targets(4)
    ring = HashRing()
    keys = [random.Random(i).getrandbits(64) for i in range(2000)]
    before = {key: ring.walk(key, pool)[0].address for key in keys}
    gone = pool.pop(2)
    after = {key: ring.walk(key, pool)[0].address for key in keys}
    moved = [key for key in keys if before[key] != after[key]]
    assert moved and all(before[key] == gone.address for key in moved)
    shares = [list(before.values()).count(t.address) / len(keys) for t in [*pool, gone]]
    assert min(shares) > 0.12  # 64 virtual nodes each keep the split near a quarter


def test_the_table_forgets_least_recently_used_blocks() -> None:
    pool = targets()
    policy = PrefixAffinity(table_blocks=10)
    policy.choose(pool, conversation(1, conv=1))  # 2 blocks
    for conv in range(2, 8):
        policy.choose(pool, conversation(1, conv=conv))
    assert policy.choose(pool, conversation(1, conv=1))[1] == "prefix_miss"


def test_a_prefix_held_by_several_upstreams_goes_to_the_least_loaded_holder() -> None:
    pool = targets()
    policy = PrefixAffinity()
    for conv, target in enumerate(pool[:2]):  # two upstreams got conversations with this system prompt
        target.in_flight = 5
        policy.choose([target], conversation(1, system=8, conv=conv))
        target.in_flight = 0
    pool[0].in_flight, pool[1].in_flight = 3, 1
    chosen, reason = policy.choose(pool, conversation(1, system=8, conv=99))
    assert (chosen, reason) == (pool[1], "prefix_hit")  # not pool[2], which never saw the prefix


def test_below_the_floor_a_conversation_is_never_moved_for_load() -> None:
    pool = targets()
    policy = PrefixAffinity(LoadBound(factor=1.25, floor=4))
    home, _ = policy.choose(pool, conversation(1))
    home.in_flight = 3  # far above 1.25x the mean of 1, but under the floor
    assert policy.choose(pool, conversation(2)) == (home, "prefix_hit")
    home.in_flight = 4
    assert policy.choose(pool, conversation(3))[1] == "prefix_overflow"
