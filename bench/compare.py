"""Ratios of front-ends measured in one run: CPU per token of A ÷ B per load point, median over repeats.

    python -m bench.compare bench/results/<run>            # every variant ÷ its baseline or plain gateway, ÷ its floor
    python -m bench.compare DIR --pair gateway/ensemble/w1+logprobs:gateway-base/ensemble/w1

Each repeat compares rows measured minutes apart in the same round (A B A B ...), so a drift of the machine
between rounds cancels out; the median of the per-repeat ratios is what a claim may quote.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

METRIC = "frontend_cpu_us_per_token"


def load_rows(folder: Path) -> list[dict[str, Any]]:
    """The measured window rows of a run."""
    rows = [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("label") == "sweep" and not r.get("failed") and r.get(METRIC)]


def point(row: dict[str, Any]) -> tuple[Any, ...]:
    """A load point (concurrency, prompt, stream)."""
    return row["concurrency"], row["prompt_tokens"], row["stream"]


def ratios(rows: list[dict[str, Any]], a: str, b: str) -> dict[tuple[Any, ...], list[float]]:
    """Per load point: A ÷ B in each repeat where both were measured."""
    by: dict[tuple[Any, ...], dict[str, float]] = defaultdict(dict)
    for row in rows:
        by[(*point(row), row.get("repeat", 0))][row["frontend"]] = row[METRIC]
    result: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for key, values in sorted(by.items()):
        if a in values and b in values:
            result[key[:-1]].append(values[a] / values[b])
    return result


def default_pairs(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Every gateway front-end against the baseline of its mode, a request variant (`.../w1+n2`) against the
    plain gateway, and each against its direct floor."""
    names = sorted({r["frontend"] for r in rows})
    pairs = []
    for name in names:
        if not name.startswith("gateway/"):
            continue
        mode = name.split("/")[1]
        base = f"gateway-base/{mode}/w1"
        if base in names:
            pairs.append((name, base))
        plain = name.split("+", 1)[0]
        if plain != name and plain in names:
            pairs.append((name, plain))
        floor = next((r["floor"] for r in rows if r["frontend"] == name and r.get("floor")), None)
        if floor in names:
            pairs.append((name, floor))
    return pairs


def table(rows: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> list[str]:
    """Markdown: one line per pair and load point."""
    lines = [
        f"| A | B | c | prompt | stream | repeats | {METRIC} A ÷ B: median (lowest–highest) |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, b in pairs:
        for (concurrency, prompt, stream), values in ratios(rows, a, b).items():
            spread = f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"
            lines.append(
                f"| {a} | {b} | {concurrency} | {prompt} | {'yes' if stream else 'no'} | {len(values)} | {spread} |"
            )
    return lines


def main() -> None:
    """Print the comparison table of a results folder."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--pair", action="append", default=[], help="A:B (front-end names); default: see above")
    args = parser.parse_args()
    rows = load_rows(args.folder)
    pairs = [tuple(p.split(":", 1)) for p in args.pair] or default_pairs(rows)
    print("\n".join(table(rows, pairs)))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
