"""bench.report: each row is compared with its floor of the same repeat; repeated points are judged on medians."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

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
    rows = measured([(100.0, 110.0), (100.0, 190.0), (100.0, 120.0)])
    gateway = next(r for r in summarise_repeats(rows) if r["frontend"] == "gateway/ensemble/w1")
    assert gateway["repeats"] == 3
    assert gateway["cpu_ratio"] == 1.2
    assert gateway["cpu_ratio_range"] == (1.1, 1.9)
    verdict = next(line for line in targets(rows) if line.startswith("| streamed front-end CPU per token"))
    assert "1.20×" in verdict and verdict.endswith("| yes |")


def test_a_single_measurement_is_judged_as_it_is() -> None:
    rows = measured([(100.0, 190.0)])
    assert summarise_repeats(rows) == rows
    verdict = next(line for line in targets(rows) if line.startswith("| streamed front-end CPU per token"))
    assert "1.90×" in verdict and verdict.endswith("| **no** |")


def test_a_request_variant_is_compared_with_the_plain_gateway_of_the_same_repeat() -> None:
    from bench.compare import default_pairs, ratios

    rows = []
    for repeat, (plain_us, variant_us) in enumerate([(100.0, 110.0), (200.0, 180.0), (150.0, 165.0)]):
        rows += [
            row("direct/ensemble", 80.0, repeat),
            row("gateway/ensemble/w1", plain_us, repeat),
            row("gateway/ensemble/w1+n2", variant_us, repeat),
        ]
    pairs = default_pairs(rows)
    assert ("gateway/ensemble/w1+n2", "gateway/ensemble/w1") in pairs
    assert ("gateway/ensemble/w1+n2", "direct/ensemble") in pairs
    assert ratios(rows, "gateway/ensemble/w1+n2", "gateway/ensemble/w1")[(64, 100, True)] == [1.1, 0.9, 1.1]


def test_rss_growth_of_the_biggest_hold_counts_from_before_the_first_hold() -> None:
    holds = []
    for concurrency, base_mb, max_mb in [(1000, 120.0, 195.0), (4000, 214.0, 300.0)]:
        hold = row("gateway/ensemble/w1", 150.0, 0) | {"label": "hold", "concurrency": concurrency}
        hold |= {"rss_baseline_mb": base_mb, "rss_max_mb": max_mb, "max_in_flight": concurrency}
        holds.append(hold | {"max_open_streams": concurrency})
    line = next(line for line in targets(holds) if "RSS growth" in line)
    # 300 - 120 = 180 MB for 4,000 streams: 45 per 1,000 (counting from 214 would hide the first run's 94 MB).
    assert "+180 MB at 4000 streams" in line and "45 MB per 1,000" in line and line.endswith("| yes |")


def test_non_streamed_points_are_judged_per_request_against_their_own_limit() -> None:
    rows = measured([(100.0, 140.0)])
    for r in rows:
        r["stream"] = False
    lines = targets(rows)
    assert next(line for line in lines if line.startswith("| non-streamed per request")).endswith("| yes |")
    assert next(line for line in lines if line.startswith("| streamed front-end CPU per token")).endswith("| n/a |")


def commit(root: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "-C", str(root), *identity, "commit", "-qm", message], check=True)
    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def targets_readme(rows: list[tuple[str, str]], status: str = "not met") -> str:
    lines = [
        "intro", "<!-- targets table: one row per target -->",
        "| # | target | latest run | status | commit | run |", "|---|---|---|---|---|---|",
        *(f"| {number} | target {number} | 1.5× | {status} | {named} | [r](x) |" for number, named in rows),
        "<!-- end of targets table -->", "after",
    ]  # fmt: skip
    return "\n".join(lines)


def test_stale_lists_the_rows_measured_before_the_last_change_under_gateway(tmp_path: Path) -> None:
    from bench import targets_table

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    first = commit(tmp_path, {"gateway/app.py": "v1\n"}, "gateway v1")
    docs = commit(tmp_path, {"README.md": "docs\n"}, "docs only")
    second = commit(tmp_path, {"gateway/app.py": "v2\n"}, "gateway v2")
    bench_only = commit(tmp_path, {"bench/run.py": "x\n"}, "bench only")
    readme = tmp_path / "bench" / "README.md"
    readme.write_text(
        targets_readme(
            [("1", first), ("2", docs), ("3", second), ("4", f"{bench_only} (issue 32)"), ("5", "–"), ("6", "abcdef0")]
        )
    )
    lines, stale = targets_table.stale_report(tmp_path, readme)
    assert lines[0].startswith(f"last change under gateway/: {second} ")
    assert stale == 4
    assert f"stale  1  target 1: measured on {first}; 1 commits have changed gateway/ since (app.py)" in lines
    assert f"stale  2  target 2: measured on {docs}; 1 commits have changed gateway/ since (app.py)" in lines
    assert "stale  5  target 5: names no commit" in lines
    assert "stale  6  target 6: abcdef0 is not a commit of this repository" in lines
    assert not any(line.startswith(("stale  3 ", "stale  4 ")) for line in lines)
    readme.write_text(targets_readme([("7", "–")], status="**not measured yet**"))
    lines, stale = targets_table.stale_report(tmp_path, readme)
    assert stale == 0 and lines[-1] == "not measured yet: 7"  # a target with no run yet is listed, not stale


def test_a_table_without_its_commit_column_is_refused() -> None:
    from bench import targets_table

    text = "<!-- targets table -->\n| # | target | run |\n|---|---|---|\n| 1 | t | r |\n<!-- end of targets table -->"
    with pytest.raises(ValueError, match="no `status`, `commit` column"):
        targets_table.target_rows(text)


def test_commit_of_finds_the_commit_whose_gateway_sources_a_run_measured(tmp_path: Path) -> None:
    from bench import targets_table
    from bench.run import source_digest

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    first = commit(tmp_path, {"gateway/app.py": "v1\n", "gateway/api/sse.py": "s\n", "gateway/x.txt": "-"}, "v1")
    measured = source_digest(tmp_path / "gateway")  # what bench.run writes into meta.json
    commit(tmp_path, {"gateway/app.py": "v2\n"}, "v2")
    results = tmp_path / "results"
    results.mkdir()
    (results / "meta.json").write_text(json.dumps({"gateway_source_sha256": measured}))
    found = targets_table.commit_of(tmp_path, results)
    assert found is not None and found.startswith(first)
    (results / "meta.json").write_text(json.dumps({"gateway_source_sha256": "0" * 16}))
    assert targets_table.commit_of(tmp_path, results) is None


def test_the_recorded_command_names_the_results_folder_not_this_machines_path() -> None:
    from bench.run import recorded_command

    out = Path("/root/out/stream-42474d4")
    command = recorded_command(["--modes", "direct", "--out", str(out), "--hold", ""], out)
    assert command == "python -m bench.run --modes direct --out bench/results/stream-42474d4 --hold ''"
    assert recorded_command([f"--out={out}"], out) == "python -m bench.run --out=bench/results/stream-42474d4"
