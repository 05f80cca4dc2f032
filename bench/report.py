"""Results files: runs.csv, summary.md (table, ratios to the direct floor, targets) and plot.png."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

from bench.stats import ratio

CSV_FIELDS = [
    "frontend", "label", "concurrency", "prompt_tokens", "output_tokens", "stream", "duration_s", "tokens",
    "tokens_per_s", "ttft_samples", "ttft_p50_ms", "ttft_p99_ms", "itl_samples", "itl_p50_ms", "itl_p99_ms",
    "errors", "requests_started", "requests_completed", "frontend_cpu_s", "frontend_cpu_us_per_token",
    "frontend_cpu_s_per_1k_tokens", "frontend_is_loadgen", "loadgen_cpu_s", "loadgen_cpu_us_per_token",
    "loadgen_processes", "probe_ttft_samples", "probe_ttft_p50_ms", "probe_ttft_p99_ms", "max_in_flight",
    "triton_cpu_s", "triton_cpu_us_per_token", "rss_baseline_mb", "rss_max_mb",
    "max_open_streams", "foreign_cpu_s", "triton_crashes", "floor", "tokens_ratio", "ttft_p50_added_ms",
    "cpu_ratio", "own_triton", "system_cpu_s", "system_cpu_us_per_token", "repeat", "failed", "note",
]  # fmt: skip
RATIOS = ("cpu_ratio", "tokens_ratio", "ttft_p50_added_ms")


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def one_line(row: dict[str, Any]) -> str:
    """A short log line for a finished run."""
    if row.get("failed"):
        return f"FAILED {row['failed']}"
    return (
        f"{_fmt(row.get('tokens_per_s'), 0)} tok/s, TTFT p50 {_fmt(row.get('ttft_p50_ms'))} ms, "
        f"ITL p50 {_fmt(row.get('itl_p50_ms'))} ms, front-end {_fmt(row.get('frontend_cpu_us_per_token'))} µs/tok, "
        f"triton {_fmt(row.get('triton_cpu_us_per_token'), 0)} µs/tok, errors {row.get('errors')}"
    )


def _point(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row.get("label"), row.get("concurrency"), row.get("prompt_tokens"), row.get("stream"))


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    """A load point and the repeat it was measured in: a row is compared with its floor of the same repeat."""
    return (*_point(row), row.get("repeat", 0))


def summarise_repeats(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per front-end and load point: the first repeat's row with each ratio replaced by the median over
    the repeats (and `repeats`, `<ratio>_range` added). Rows of a single measurement come back unchanged."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row.get("frontend"), *_point(row)), []).append(row)
    summary = []
    for group in groups.values():
        measured = [r for r in group if not r.get("failed")]
        if len(group) == 1 or not measured:
            summary.append(group[0])
            continue
        merged = dict(measured[0], repeats=len(measured))
        for name in RATIOS:
            values = [r[name] for r in measured if r.get(name) is not None]
            merged[name] = statistics.median(values) if values else None
            merged[f"{name}_range"] = (min(values), max(values)) if values else None
        summary.append(merged)
    return summary


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row against its floor (the direct client on the same Triton model, same load)."""
    floors = {(r["frontend"], *_key(r)): r for r in rows if str(r.get("frontend", "")).startswith("direct/")}
    for row in rows:
        floor = floors.get((row.get("floor"), *_key(row)))
        if floor is None or floor is row or row.get("failed"):
            continue
        row["tokens_ratio"] = ratio(row.get("tokens_per_s"), floor.get("tokens_per_s"))
        if row.get("ttft_p50_ms") is not None and floor.get("ttft_p50_ms") is not None:
            row["ttft_p50_added_ms"] = row["ttft_p50_ms"] - floor["ttft_p50_ms"]
        row["cpu_ratio"] = ratio(row.get("frontend_cpu_us_per_token"), floor.get("frontend_cpu_us_per_token"))


def _other(row: dict[str, Any]) -> str:
    if row.get("foreign_cpu_s") is None or not row.get("duration_s"):
        return "–"
    return f"{row['foreign_cpu_s'] / row['duration_s']:.2f}"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| front-end | run | c | prompt | stream | tok/s | TTFT p50 / p99 ms (n) | probe TTFT p50 / p99 ms "
        "| ITL p50 / p99 ms | errors "
        "| front-end CPU µs/tok | loadgen µs/tok | Triton µs/tok | system CPU µs/tok | RSS base→max MB "
        "| tok/s ÷ direct "
        "| TTFT p50 added ms | CPU ÷ direct | other procs (cores) |",
        "|" + "---|" * 19,
    ]
    for r in rows:
        if r.get("label") == "skipped":
            lines.append(f"| {r['frontend']} | {r.get('note', '')} |" + " |" * 17)
            continue
        if r.get("failed"):
            lines.append(
                f"| {r['frontend']} | {r.get('label')} | {r.get('concurrency')} | FAILED: {r['failed'][:80]} |"
            )
            continue
        rss = (
            f"{_fmt(r.get('rss_baseline_mb'), 0)}→{_fmt(r.get('rss_max_mb'), 0)}"
            if r.get("rss_max_mb") is not None
            else "–"
        )
        run = f"{r['label']} #{r['repeat'] + 1}" if r.get("repeat") else r["label"]  # later repeats are numbered
        lines.append(
            f"| {r['frontend']} | {run} | {r['concurrency']} | {r['prompt_tokens']} | "
            f"{'yes' if r['stream'] else 'no'} | {_fmt(r['tokens_per_s'], 0)} | "
            f"{_fmt(r['ttft_p50_ms'])} / {_fmt(r['ttft_p99_ms'])} ({r['ttft_samples']}) | "
            f"{_fmt(r.get('probe_ttft_p50_ms'))} / {_fmt(r.get('probe_ttft_p99_ms'))} | "
            f"{_fmt(r['itl_p50_ms'])} / {_fmt(r['itl_p99_ms'])} | "
            f"{r['errors']} | {_fmt(r['frontend_cpu_us_per_token'])} | {_fmt(r['loadgen_cpu_us_per_token'])} | "
            f"{_fmt(r['triton_cpu_us_per_token'], 0)} | {_fmt(_system_us(r), 0)} | {rss} | "
            f"{_fmt(r.get('tokens_ratio'), 2)} | "
            f"{_fmt(r.get('ttft_p50_added_ms'), 2)} | {_fmt(r.get('cpu_ratio'), 2)} | {_other(r)} |"
        )
    return lines


def _repeats_table(rows: list[dict[str, Any]]) -> list[str]:
    """Median and range of each ratio for the points measured more than once (empty if none were)."""
    repeated = [r for r in summarise_repeats(rows) if r.get("repeats", 1) > 1 and r.get("cpu_ratio") is not None]
    if not repeated:
        return []

    def spread(row: dict[str, Any], name: str, digits: int) -> str:
        low_high = row.get(f"{name}_range")
        if row.get(name) is None or low_high is None:
            return "–"
        return f"{row[name]:.{digits}f} ({low_high[0]:.{digits}f}–{low_high[1]:.{digits}f})"

    lines = [
        "## Ratios over repeats",
        "",
        "Median (lowest–highest) of the ratios to the direct client taken in each repeat.",
        "",
        "| front-end | run | c | prompt | stream | repeats | CPU ÷ direct | tok/s ÷ direct | TTFT p50 added ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in repeated:
        lines.append(
            f"| {r['frontend']} | {r['label']} | {r['concurrency']} | {r['prompt_tokens']} | "
            f"{'yes' if r['stream'] else 'no'} | {r['repeats']} | {spread(r, 'cpu_ratio', 2)} | "
            f"{spread(r, 'tokens_ratio', 2)} | {spread(r, 'ttft_p50_added_ms', 2)} |"
        )
    return [*lines, ""]


GATEWAY_REF = "gateway/ensemble/w1"  # what the peers are compared with (same Triton model, `ensemble`)
KEEP_UP = 0.9  # a front-end keeps up at a point when it delivers at least this share of the direct client's tok/s


def _system_us(row: dict[str, Any]) -> float | None:
    """System CPU per token (front-end + Triton); recomputed for rows written before the field existed."""
    if row.get("system_cpu_us_per_token") is not None:
        return float(row["system_cpu_us_per_token"])
    fe, tr = row.get("frontend_cpu_us_per_token"), row.get("triton_cpu_us_per_token")
    if fe is None:
        return None
    return float(fe) + (0.0 if row.get("own_triton") else float(tr or 0.0))


def _usable(row: dict[str, Any]) -> bool:
    """A row to compare: measured, tokens delivered, and at most 5 % of its requests failed (a front-end that
    died mid-window, e.g. a segfaulted LiteLLM proxy, is not compared)."""
    if row.get("failed") or not row.get("tokens_per_s"):
        return False
    return (row.get("errors") or 0) <= 0.05 * max(1, row.get("requests_started") or 0)


def _ttfts(gateway: dict[str, Any], peer: dict[str, Any]) -> tuple[float | None, float | None]:
    """TTFT p50 of both, from the same source: the window's requests when both have them, else the latency probe."""
    if gateway.get("ttft_p50_ms") is not None and peer.get("ttft_p50_ms") is not None:
        return gateway["ttft_p50_ms"], peer["ttft_p50_ms"]
    return gateway.get("probe_ttft_p50_ms"), peer.get("probe_ttft_p50_ms")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def peer_comparison(rows: list[dict[str, Any]], gateway: str = GATEWAY_REF) -> list[dict[str, Any]]:
    """The gateway against each peer (Triton's frontend, LiteLLM) at every point both ran: per repeat the pair of
    rows of that repeat, then the median over repeats of each figure and ratio. `keeps_up`: both reached
    KEEP_UP × the direct client's tokens/s in every repeat (None without a direct floor)."""
    by_key = {(r.get("frontend"), *_key(r)): r for r in rows if _usable(r)}
    pairs: dict[tuple[Any, ...], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for (name, *key), peer in by_key.items():
        if name not in PEER_NAMES:
            continue
        gw = by_key.get((gateway, *key))
        if gw is not None:
            pairs.setdefault((name, *key[:-1]), []).append((gw, peer))
    out = []
    for (name, label, concurrency, prompt, stream), group in pairs.items():

        def med(get: Any, group: list[tuple[dict[str, Any], dict[str, Any]]] = group) -> float | None:
            return _median([v for v in (get(g, p) for g, p in group) if v is not None])

        keeps = [(g.get("tokens_ratio"), p.get("tokens_ratio")) for g, p in group]
        keeps_up = (
            None
            if any(a is None or b is None for a, b in keeps)
            else all(a >= KEEP_UP and b >= KEEP_UP for a, b in keeps)
        )
        out.append(
            {
                "peer": name, "label": label, "concurrency": concurrency, "prompt_tokens": prompt, "stream": stream,
                "repeats": len(group),
                "gateway_tokens_per_s": med(lambda g, p: g["tokens_per_s"]),
                "peer_tokens_per_s": med(lambda g, p: p["tokens_per_s"]),
                "gateway_ttft_ms": med(lambda g, p: _ttfts(g, p)[0]),
                "peer_ttft_ms": med(lambda g, p: _ttfts(g, p)[1]),
                "gateway_frontend_us": med(lambda g, p: g.get("frontend_cpu_us_per_token")),
                "peer_frontend_us": med(lambda g, p: p.get("frontend_cpu_us_per_token")),
                "gateway_system_us": med(lambda g, p: _system_us(g)),
                "peer_system_us": med(lambda g, p: _system_us(p)),
                "tokens_gateway_over_peer": med(lambda g, p: ratio(g["tokens_per_s"], p["tokens_per_s"])),
                "frontend_cpu_peer_over_gateway": med(
                    lambda g, p: ratio(p.get("frontend_cpu_us_per_token"), g.get("frontend_cpu_us_per_token"))
                ),
                "system_cpu_peer_over_gateway": med(lambda g, p: ratio(_system_us(p), _system_us(g))),
                "keeps_up": keeps_up,
            }
        )  # fmt: skip
    return sorted(out, key=lambda r: (r["peer"], r["label"] != "ttft", r["prompt_tokens"], not r["stream"],
                                      r["concurrency"]))  # fmt: skip


PEER_NAMES = ("tritonfe", "litellm")


def _peer_table(rows: list[dict[str, Any]]) -> list[str]:
    """The side-by-side table of the gateway and the peers (empty when no peer ran)."""
    compared = peer_comparison(rows)
    if not compared:
        return []
    lines = [
        f"## Side by side: {GATEWAY_REF} and the other OpenAI servers",
        "",
        "Same Triton build, same synthetic engine, same prompts and `max_tokens`. Figures are gateway / peer "
        "(medians over repeats). *System CPU* = front-end + Triton: the gateway's tree plus tritonserver's; "
        "for Triton's own frontend (`tritonfe`, Triton in-process) its one process tree, stubs included; for "
        "LiteLLM its tree plus tritonserver's. *Keeps up*: both reach "
        f"{KEEP_UP}× the direct client's tok/s.",
        "",
        "| peer | run | c | prompt | stream | repeats | tok/s | TTFT p50 ms (probe's if a window has none) "
        "| front-end CPU µs/tok "
        "| system CPU µs/tok | gateway tok/s ÷ peer | peer front-end CPU ÷ gateway | peer system CPU ÷ gateway "
        "| both keep up |",
        "|" + "---|" * 14,
    ]
    for r in compared:

        def pair(a: str, b: str, digits: int = 1, r: dict[str, Any] = r) -> str:
            return f"{_fmt(r[a], digits)} / {_fmt(r[b], digits)}"

        keeps = {None: "–", True: "yes", False: "no"}[r["keeps_up"]]
        lines.append(
            f"| {r['peer']} | {r['label']} | {r['concurrency']} | {r['prompt_tokens']} | "
            f"{'yes' if r['stream'] else 'no'} | {r['repeats']} | "
            f"{pair('gateway_tokens_per_s', 'peer_tokens_per_s', 0)} | {pair('gateway_ttft_ms', 'peer_ttft_ms')} | "
            f"{pair('gateway_frontend_us', 'peer_frontend_us')} | {pair('gateway_system_us', 'peer_system_us')} | "
            f"{_fmt(r['tokens_gateway_over_peer'], 2)} | {_fmt(r['frontend_cpu_peer_over_gateway'], 2)} | "
            f"{_fmt(r['system_cpu_peer_over_gateway'], 2)} | {keeps} |"
        )
    return [*lines, ""]


def peer_targets(rows: list[dict[str, Any]]) -> list[str]:
    """Against Triton's own frontend: ≥ 2× its tokens/s at saturation (the highest streamed concurrency of the
    sweep), and no more system CPU per token where both keep up."""
    compared = [r for r in peer_comparison(rows) if r["peer"] == "tritonfe" and r["label"] == "sweep"]
    if not compared:
        return []

    def verdict(good: bool | None) -> str:
        return "n/a" if good is None else ("yes" if good else "**no**")

    lines = []
    streamed = [r for r in compared if r["stream"] and r["tokens_gateway_over_peer"] is not None]
    top = max((r["concurrency"] for r in streamed), default=None)
    at_top = [r for r in streamed if r["concurrency"] == top]
    low = min(at_top, key=lambda r: r["tokens_gateway_over_peer"], default=None)
    text = (
        f"{low['tokens_gateway_over_peer']:.2f}× at c={low['concurrency']} "
        f"({_fmt(low['gateway_tokens_per_s'], 0)} vs {_fmt(low['peer_tokens_per_s'], 0)} tok/s)"
        if low
        else "–"
    )
    good = None if low is None else low["tokens_gateway_over_peer"] >= 2.0
    lines.append(f"| ≥ 2× the tokens/s of Triton's OpenAI frontend at saturation | {text} | {verdict(good)} |")
    both = [r for r in compared if r["keeps_up"] and r["system_cpu_peer_over_gateway"] is not None]
    worst = min(both, key=lambda r: r["system_cpu_peer_over_gateway"], default=None)
    text = (
        f"tritonfe ÷ gateway lowest {worst['system_cpu_peer_over_gateway']:.2f}× (c={worst['concurrency']}, "
        f"{'stream' if worst['stream'] else 'non-stream'}; {len(both)} points)"
        if worst
        else "– (no point where both keep up)"
    )
    good = None if worst is None else all(r["system_cpu_peer_over_gateway"] >= 1.0 for r in both)
    name = "no more system CPU per token than Triton's frontend where both keep up"
    lines.append(f"| {name} | {text} | {verdict(good)} |")
    return lines


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, judged on what was measured (n/a when the run needed was not in this sweep); a point
    measured several times (`--repeats`) is judged on its median ratios."""
    ok = [r for r in summarise_repeats(rows) if not r.get("failed") and r.get("label") not in ("skipped", None)]
    gateways = [r for r in ok if r["frontend"].startswith("gateway/")]
    lines = ["| target | measured | met |", "|---|---|---|"]

    def verdict(good: bool | None) -> str:
        return "n/a" if good is None else ("yes" if good else "**no**")

    for streamed, name, limit in (
        (True, "streamed front-end CPU per token", 1.25),
        (False, "non-streamed per request", 1.5),
    ):
        busy = [
            r
            for r in gateways
            if r["label"] == "sweep" and r["concurrency"] >= 64 and r.get("cpu_ratio") and bool(r["stream"]) == streamed
        ]
        worst = max(busy, key=lambda r: r["cpu_ratio"], default=None)
        text = f"worst {worst['cpu_ratio']:.2f}× ({worst['frontend']}, c={worst['concurrency']})" if worst else "–"
        lines.append(
            f"| {name} ≤ {limit}× direct (c ≥ 64) | {text} | {verdict(worst and worst['cpu_ratio'] <= limit)} |"
        )
    pairs = []
    for lite in (r for r in ok if r["frontend"] == "litellm" and r["label"] == "sweep"):
        gw = next((g for g in gateways if g["frontend"] == "gateway/ensemble/w1" and _key(g) == _key(lite)), None)
        if gw and gw.get("frontend_cpu_us_per_token") and lite.get("frontend_cpu_us_per_token"):
            pairs.append((lite["frontend_cpu_us_per_token"] / gw["frontend_cpu_us_per_token"], lite["concurrency"]))
    least = min(pairs, default=None)
    text = f"least {least[0]:.1f}× (c={least[1]})" if least else "–"
    lines.append(f"| LiteLLM's proxy ≥ 5× the gateway's CPU per token | {text} | {verdict(least and least[0] >= 5)} |")
    at256 = [r for r in gateways if r["label"] == "sweep" and r["concurrency"] == 256 and r.get("tokens_ratio")]
    low = min(at256, key=lambda r: r["tokens_ratio"], default=None)
    text = f"lowest {low['tokens_ratio']:.3f}× ({low['frontend']})" if low else "–"
    lines.append(f"| tokens/s at 256 streams ≥ 0.9× direct | {text} | {verdict(low and low['tokens_ratio'] >= 0.9)} |")
    probes = [r for r in gateways if r["label"] == "ttft" and r.get("ttft_p50_added_ms") is not None]
    high = max(probes, key=lambda r: r["ttft_p50_added_ms"], default=None)
    text = f"largest +{high['ttft_p50_added_ms']:.2f} ms ({high['frontend']})" if high else "–"
    lines.append(f"| TTFT p50 added at c=1 ≤ 1 ms | {text} | {verdict(high and high['ttft_p50_added_ms'] <= 1)} |")
    holds = [r for r in gateways if r["label"] == "hold"]
    big = max(holds, key=lambda r: r["concurrency"], default=None)
    if big:
        # Held means: all in flight together, none failed, and every one got its first token.
        good = (
            big["errors"] == 0
            and big.get("max_in_flight", 0) >= big["concurrency"]
            and big["max_open_streams"] >= big["concurrency"]
        )
        text = (
            f"{big.get('max_in_flight')} in flight at once ({big['max_open_streams']} had their first token), "
            f"{big['errors']} errors, {big['tokens_per_s']:.0f} tok/s ({big['frontend']})"
        )
        lines.append(f"| one process holds {big['concurrency']} streams without error | {text} | {verdict(good)} |")
    if big and big.get("rss_max_mb") is not None:
        # From the process's RSS before its first hold run: an allocator keeps what an earlier run took.
        start = min(r["rss_baseline_mb"] for r in holds if r["frontend"] == big["frontend"])
        growth = big["rss_max_mb"] - start
        per_1000 = growth * 1000 / big["concurrency"]
        text = (
            f"+{growth:.0f} MB at {big['concurrency']} streams ({start:.0f} → {big['rss_max_mb']:.0f} MB): "
            f"{per_1000:.0f} MB per 1,000"
        )
        lines.append(f"| RSS growth < 50 MB per 1,000 open streams | {text} | {verdict(per_1000 < 50)} |")
    return lines + peer_targets(rows)


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    """Throughput, TTFT, ITL and CPU per token against concurrency; one row of panels per prompt/stream (the
    first repeat of each point)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sweep = [
        r for r in rows if r.get("label") == "sweep" and not r.get("failed") and r.get("tokens") and not r.get("repeat")
    ]
    for r in sweep:  # no request started and got its first token inside the window: use the latency probe's
        r.setdefault("ttft_plot_ms", r.get("ttft_p50_ms") or r.get("probe_ttft_p50_ms"))
    groups = sorted({(r["prompt_tokens"], r["stream"]) for r in sweep})
    if not groups:
        return False
    panels = [
        ("tokens_per_s", "delivered tokens/s"),
        ("ttft_plot_ms", "TTFT p50 (ms; probe where no natural sample)"),
        ("itl_p99_ms", "ITL p99 (ms)"),
        ("frontend_cpu_us_per_token", "front-end CPU µs/token"),
    ]
    fig, axes = plt.subplots(len(groups), len(panels), figsize=(18, 4.2 * len(groups)), squeeze=False)
    for g, (prompt, stream) in enumerate(groups):
        for p, (field, title) in enumerate(panels):
            ax = axes[g][p]
            for name in sorted({r["frontend"] for r in sweep}):
                points = sorted(
                    (r["concurrency"], r[field])
                    for r in sweep
                    if r["frontend"] == name and (r["prompt_tokens"], r["stream"]) == (prompt, stream) and r.get(field)
                )
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", label=name)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("concurrency")
            ax.set_title(f"{title} — prompt {prompt}, {'stream' if stream else 'non-stream'}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write(out: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write runs.csv, summary.md and plot.png for these rows."""
    add_ratios(rows)
    with (out / "runs.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "runs.json").write_text(json.dumps(rows, indent=1))
    plotted = plot(rows, out / "plot.png")
    engine = meta.get("synthetic_engine", {})
    lines = [
        f"# Benchmark {out.name}",
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- machine: {json.dumps(meta['machine'])}",
        f"- CPU placement: {meta['placement']}",
        f"- synthetic engine: {json.dumps(engine)}",
        "",
        "## Targets",
        "",
        *targets(rows),
        "",
        *_repeats_table(rows),
        *_peer_table(rows),
        "## Runs",
        "",
        *_table(rows),
        "",
    ]
    if plotted:
        lines += ["![throughput and latency against concurrency](plot.png)", ""]
    (out / "summary.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.report RESULTS_DIR`: rewrite runs.csv, summary.md and plot.png from runs.jsonl;
    `--stale` and `--commit-of RESULTS_DIR` compare bench/README.md's targets table with git (bench.targets_table)."""
    import sys

    args = argv if argv is not None else sys.argv[1:]
    if args and args[0] in ("--stale", "--commit-of"):
        from bench import targets_table

        return targets_table.main(args)
    out = Path(args[0])
    meta = json.loads((out / "meta.json").read_text())
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
    write(out, meta, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
