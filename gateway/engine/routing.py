"""Routing policies: which upstream of a pool serves the next request.

Every policy picks among the upstreams that are available now (healthy, not ejected) and returns the choice
with a reason (a bounded metric label). The affinity policies use consistent hashing with bounded load: a key
is placed on a hash ring (64 virtual nodes per upstream) and walked clockwise, skipping any upstream whose load
would exceed `max(floor, ceil(factor x (in flight + 1) / upstreams))` (LoadBound): with the defaults 1.25 and 4,
no upstream is sent a request while it holds more than 1.25x the mean load (rounded up), except that an upstream
with fewer than 4 requests in flight is never full (at a handful of requests the mean is no measure of overload,
and moving a conversation would cost its cache). At least one upstream is always under the bound, so the walk
always ends.

`prefix_affinity` keys a request by the chained hashes of its prompt's token blocks (one per KV-cache block):
the longest block chain that was already sent somewhere picks the upstreams it went to (their KV caches likely
still hold the prefix), and the least loaded of them takes it; a prefix never seen places the request by its
own last block on the ring. So the turns of one conversation stay on one upstream, and requests that share a
long system prompt spread over the upstreams that hold it, until they are full.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

PolicyName = Literal["least_outstanding", "power_of_two", "round_robin", "prefix_affinity"]
POLICIES: tuple[PolicyName, ...] = ("least_outstanding", "power_of_two", "round_robin", "prefix_affinity")
DEFAULT_LOAD_FACTOR = 1.25
DEFAULT_LOAD_FLOOR = 4
VIRTUAL_NODES = 64


class Target(Protocol):
    """What a policy needs to know of an upstream."""

    @property
    def address(self) -> str:
        """Its stable name (host:port)."""
        ...

    @property
    def in_flight(self) -> int:
        """Requests it is serving now."""
        ...


@dataclass(frozen=True, slots=True)
class RouteKey:
    """What a request offers for affinity: its prompt's block-chain hashes and a client session id."""

    blocks: tuple[int, ...] = ()
    session: str | None = None


class RoutingPolicy(Protocol):
    """Chooses an upstream for a request among non-empty `candidates`."""

    name: PolicyName
    needs_blocks: bool  # whether the pool must hash the prompt's token blocks for it

    def choose(self, candidates: Sequence[Target], key: RouteKey) -> tuple[Target, str]:
        """The upstream and the reason (a metric label)."""
        ...


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (unlike `hash(str)`)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True, slots=True)
class LoadBound:
    """How full an upstream may get under the affinity policies (see the module doc)."""

    factor: float = DEFAULT_LOAD_FACTOR
    floor: int = DEFAULT_LOAD_FLOOR

    def limit(self, candidates: Sequence[Target]) -> int:
        """The most requests one upstream may hold once the next one is placed."""
        total = sum(c.in_flight for c in candidates) + 1
        return max(self.floor, math.ceil(self.factor * total / len(candidates)))


class HashRing:
    """Consistent-hash ring over upstream addresses, rebuilt only when the set of addresses changes."""

    def __init__(self, virtual_nodes: int = VIRTUAL_NODES) -> None:
        self._virtual_nodes = virtual_nodes
        self._members: frozenset[str] = frozenset()
        self._points: list[int] = []
        self._owners: list[str] = []

    def walk(self, key: int, candidates: Sequence[Target]) -> list[Target]:
        """The candidates in ring order, starting at the first point at or after `key`."""
        members = frozenset(c.address for c in candidates)
        if members != self._members:
            self._rebuild(members)
        by_address = {c.address: c for c in candidates}
        start = bisect.bisect_left(self._points, key % (1 << 64))
        order: list[Target] = []
        count = len(self._owners)
        for step in range(count):
            target = by_address.get(self._owners[(start + step) % count])
            if target is not None and target not in order:
                order.append(target)
                if len(order) == len(by_address):
                    break
        return order

    def _rebuild(self, members: frozenset[str]) -> None:
        nodes = range(self._virtual_nodes)
        points = sorted((stable_hash(f"{address}#{i}"), address) for address in members for i in nodes)
        self._members = members
        self._points = [point for point, _ in points]
        self._owners = [address for _, address in points]


def first_within_bound(order: Sequence[Target], bound: int) -> Target:
    """The first upstream in `order` that may take one more request (one always can: see the module doc)."""
    return next((t for t in order if t.in_flight + 1 <= bound), min(order, key=lambda t: t.in_flight))


class LeastOutstanding:
    """The upstream with the fewest requests in flight (ties broken at random): adapts to slow replicas."""

    name: PolicyName = "least_outstanding"
    needs_blocks = False

    def choose(self, candidates: Sequence[Target], key: RouteKey) -> tuple[Target, str]:
        """Pick the least loaded."""
        fewest = min(c.in_flight for c in candidates)
        return random.choice([c for c in candidates if c.in_flight == fewest]), "least_outstanding"


class PowerOfTwo:
    """Two upstreams at random, the less loaded of them: near least-outstanding balance without a global scan,
    and no herd onto one replica when several gateway workers see the same loads."""

    name: PolicyName = "power_of_two"
    needs_blocks = False

    def choose(self, candidates: Sequence[Target], key: RouteKey) -> tuple[Target, str]:
        """Pick the less loaded of two."""
        if len(candidates) == 1:
            return candidates[0], "power_of_two"
        first, second = random.sample(list(candidates), 2)
        return (first if first.in_flight <= second.in_flight else second), "power_of_two"


class RoundRobin:
    """Each upstream in turn (by address order): the baseline, blind to load and cache."""

    name: PolicyName = "round_robin"
    needs_blocks = False

    def __init__(self) -> None:
        self._counter = itertools.count()

    def choose(self, candidates: Sequence[Target], key: RouteKey) -> tuple[Target, str]:
        """Pick the next one."""
        ordered = sorted(candidates, key=lambda c: c.address)
        return ordered[next(self._counter) % len(ordered)], "round_robin"


class SessionAffinity:
    """A client's session id on the ring, with bounded load: one session stays on one upstream while it can."""

    def __init__(self, bound: LoadBound = LoadBound()) -> None:
        self.bound = bound
        self._ring = HashRing()

    def choose(self, candidates: Sequence[Target], session: str) -> tuple[Target, str]:
        """Pick the session's upstream, or the next one on the ring when it is full."""
        order = self._ring.walk(stable_hash(session), candidates)
        chosen = first_within_bound(order, self.bound.limit(candidates))
        return chosen, "session" if chosen is order[0] else "session_overflow"


class PrefixAffinity:
    """Prompt-prefix affinity over token blocks with bounded load (see the module doc).

    `table_blocks` bounds the remembered block hashes (least recently used are forgotten first); each one costs
    about 150 bytes. Each block remembers up to `holders` upstreams, most recent first.
    """

    name: PolicyName = "prefix_affinity"
    needs_blocks = True

    def __init__(self, bound: LoadBound = LoadBound(), table_blocks: int = 200_000, holders: int = 4) -> None:
        self.bound = bound
        self._table_blocks = table_blocks
        self._holders = holders
        self._placed: OrderedDict[int, tuple[str, ...]] = OrderedDict()  # block-chain hash -> upstreams sent it
        self._ring = HashRing()

    def choose(self, candidates: Sequence[Target], key: RouteKey) -> tuple[Target, str]:
        """Pick where the longest known prefix went, or the ring's choice; record the placement."""
        blocks = key.blocks
        if not blocks:  # shorter than one KV block: nothing to reuse
            fewest = min(c.in_flight for c in candidates)
            return random.choice([c for c in candidates if c.in_flight == fewest]), "prefix_short"
        by_address = {c.address: c for c in candidates}
        warm: list[Target] = []
        anchor = blocks[-1]
        for block in reversed(blocks):
            warm = [by_address[a] for a in self._placed.get(block, ()) if a in by_address]
            if warm:
                anchor = block
                break
        warm.sort(key=lambda t: t.in_flight)
        order = warm + [t for t in self._ring.walk(anchor, candidates) if t not in warm]
        chosen = first_within_bound(order, self.bound.limit(candidates))
        reason = "prefix_miss" if not warm else "prefix_hit" if chosen in warm else "prefix_overflow"
        self._remember(blocks, chosen.address)
        return chosen, reason

    def _remember(self, blocks: Sequence[int], address: str) -> None:
        placed = self._placed
        for block in blocks:
            holders = placed.get(block, ())
            if not holders or holders[0] != address:
                placed[block] = (address, *(h for h in holders if h != address))[: self._holders]
            placed.move_to_end(block)
        while len(placed) > self._table_blocks:
            placed.popitem(last=False)


def make_policy(name: PolicyName, bound: LoadBound = LoadBound()) -> RoutingPolicy:
    """The policy called `name`."""
    if name == "least_outstanding":
        return LeastOutstanding()
    if name == "power_of_two":
        return PowerOfTwo()
    if name == "round_robin":
        return RoundRobin()
    return PrefixAffinity(bound)


def block_hashes(token_ids: Sequence[int], block_size: int) -> tuple[int, ...]:
    """Chained hashes of the full blocks of `token_ids`: block i's hash covers blocks 0..i, as a KV cache's
    block reuse does. A trailing partial block is not hashed (an engine does not reuse it either).
    Tuples of ints hash the same in every process."""
    hashes: list[int] = []
    previous = 0
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        previous = hash((previous, *token_ids[start : start + block_size]))
        hashes.append(previous)
    return tuple(hashes)
