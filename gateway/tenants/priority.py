"""Priority classes, and the admission queue's order: the highest class first, aged so the lowest never starves.

A waiting request's standing is its class rank plus the time it has waited divided by the aging time, so a
request is never overtaken by one of a class k ranks higher that arrived more than k x `aging_s` after it: once
the higher requests that arrived within that time have run, it is next, however many keep arriving. Within a
class the order is first come, first served.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

PRIORITY_CLASSES = ("low", "normal", "high")
LOW, NORMAL, HIGH = range(3)
# TensorRT-LLM's request priority (executor::Request::setPriority) is a float from 0 to 1, 0.5 by default.
ENGINE_PRIORITY = {LOW: 0.0, NORMAL: 0.5, HIGH: 1.0}

T = TypeVar("T")


def priority_rank(name: str) -> int:
    """The rank of a class name."""
    return PRIORITY_CLASSES.index(name)


class AgingQueue(Generic[T]):
    """Waiters by class; `pop` takes the head with the best standing (class + waited / aging_s)."""

    def __init__(self, aging_s: float, clock: Callable[[], float]) -> None:
        self.aging_s = aging_s
        self._clock = clock
        self._classes: list[deque[tuple[float, T]]] = [deque() for _ in PRIORITY_CLASSES]
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, item: T, rank: int) -> None:
        """Queue `item` in its class."""
        self._classes[rank].append((self._clock(), item))
        self._size += 1

    def pop(self) -> T:
        """The next waiter (IndexError when empty)."""
        now = self._clock()
        best: deque[tuple[float, T]] | None = None
        best_standing = 0.0
        for rank, waiters in enumerate(self._classes):
            if waiters:
                standing = rank + (now - waiters[0][0]) / self.aging_s
                if best is None or standing > best_standing:
                    best, best_standing = waiters, standing
        if best is None:
            raise IndexError("pop from an empty queue")
        self._size -= 1
        return best.popleft()[1]

    def remove(self, item: T) -> bool:
        """Take `item` out of line (a waiter that gave up); whether it was there."""
        for waiters in self._classes:
            for entry in waiters:
                if entry[1] is item:
                    waiters.remove(entry)
                    self._size -= 1
                    return True
        return False
