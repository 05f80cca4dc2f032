"""bench.report: each row is compared with its floor of the same repeat; repeated points are judged on medians."""

from __future__ import annotations

from typing import Any

from bench.report import add_ratios, summarise_repeats, targets


def row(frontend: str, cpu_us: float, repeat: int, tokens_per_s: float = 1000.0) -> dict[str, Any]:
    floor = "direct/ensemble" if frontend.startswith("gateway/") else None
    return {
        "frontend": frontend, "floor": floor, "label": "sweep", "concurrency": 64, "prompt_tokens": 100,
        "stream": True, "repeat": repeat, "frontend_cpu_us_per_token": cpu_us, "tokens_per_s": tokens_per_s,
        "ttft_p50_ms": None, "errors": 0,
    }  # fmt: skip


def measured(pairs: list[tuple[float, float]]) -> list[dict[str, Any]]:
    rows = []
    for repeat, (direct_us, gateway_us) in enumerate(pairs):
        rows += [row("direct/ensemble", direct_us, repeat), row("gateway/ensemble/w1", gateway_us, repeat)]
    add_ratios(rows)
    return rows


def test_each_repeat_is_compared_with_its_own_floor() -> None:
    rows = measured([(100.0, 150.0), (80.0, 160.0)])
    assert [r.get("cpu_ratio") for r in rows if r["frontend"].startswith("gateway/")] == [1.5, 2.0]


def test_repeated_points_are_summarised_by_their_median_ratio() -> None:
    rows = measured([(100.0, 120.0), (100.0, 190.0), (100.0, 140.0)])
    gateway = next(r for r in summarise_repeats(rows) if r["frontend"] == "gateway/ensemble/w1")
    assert gateway["repeats"] == 3
    assert gateway["cpu_ratio"] == 1.4
    assert gateway["cpu_ratio_range"] == (1.2, 1.9)
    verdict = next(line for line in targets(rows) if line.startswith("| front-end CPU per token"))
    assert "1.40×" in verdict and verdict.endswith("| yes |")


def test_a_single_measurement_is_judged_as_it_is() -> None:
    rows = measured([(100.0, 190.0)])
    assert summarise_repeats(rows) == rows
    verdict = next(line for line in targets(rows) if line.startswith("| front-end CPU per token"))
    assert "1.90×" in verdict and verdict.endswith("| **no** |")
