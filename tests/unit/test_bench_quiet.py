"""bench.runner.wait_quiet: a run starts once Triton has stopped working, not only once its engine has."""

from __future__ import annotations

import pytest

from bench import runner
from bench.procs import ProcessTree


class ScriptedTree(ProcessTree):
    """CPU seconds that grow by `busy_s` per sample for the first `busy_samples` samples, then stay put."""

    def __init__(self, busy_samples: int, busy_s: float) -> None:
        super().__init__([])
        self.busy_samples = busy_samples
        self.busy_s = busy_s
        self.samples = 0
        self.spent = 0.0

    def cpu_times(self) -> dict[int, float]:
        if self.samples <= self.busy_samples:
            self.spent += self.busy_s
        self.samples += 1
        return {1: self.spent}


@pytest.fixture(autouse=True)
def short_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "QUIET_SAMPLE_S", 0.01)


def test_it_waits_through_the_busy_samples_and_returns_at_the_first_quiet_one() -> None:
    tree = ScriptedTree(busy_samples=4, busy_s=0.01)  # a core per 0.01-s sample: busy
    runner.wait_quiet(tree, timeout_s=5)
    assert tree.samples == 6  # the first sample, four busy intervals, one quiet


def test_a_little_cpu_under_the_threshold_counts_as_quiet() -> None:
    tree = ScriptedTree(busy_samples=100, busy_s=runner.QUIET_CORES * 0.01 / 2)
    runner.wait_quiet(tree, timeout_s=5)
    assert tree.samples == 2


def test_a_tree_that_never_quiets_down_times_out_by_name() -> None:
    with pytest.raises(TimeoutError, match="Triton still busy after 0 s"):
        runner.wait_quiet(ScriptedTree(busy_samples=10**6, busy_s=0.01), timeout_s=0.05)
