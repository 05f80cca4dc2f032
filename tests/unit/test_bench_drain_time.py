"""bench.drain_time: its summary per route, and its refusal of a route the BLS does not have."""

from __future__ import annotations

import pytest

from bench.drain_time import Drain, main, summary


def test_the_summary_gives_each_route_its_medians_and_range_in_the_order_they_ran() -> None:
    drains = [
        Drain("grpc", 8000, 0, 0.2, 5.1),
        Drain("exec", 9000, 0, 0.1, 0.6),
        Drain("grpc", 7000, 1, 0.3, 4.3),
        Drain("exec", 9400, 0, 0.3, 0.4),
        Drain("grpc", 7600, 0, 0.1, 6.0),
    ]
    assert summary(drains) == [
        "grpc  3 storm(s): engine idle after 0.2 s (0.1–0.3), Triton quiet after 5.1 s (4.3–6.0); "
        "7,600 tokens read, 1 stops failed",
        "exec  2 storm(s): engine idle after 0.2 s (0.1–0.3), Triton quiet after 0.5 s (0.4–0.6); "
        "9,200 tokens read, 0 stops failed",
    ]


def test_an_unknown_route_is_refused_before_any_triton_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--routes", "grpc,http"])
    assert "--routes: unknown http (grpc, exec)" in capsys.readouterr().err
