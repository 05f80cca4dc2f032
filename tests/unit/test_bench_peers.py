"""bench --peers: Triton's own OpenAI frontend as a front-end (set-up checks, command, CPU placement) and the
side-by-side report (gateway against each peer, system CPU per token, the two targets against Triton's frontend)."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path
from typing import Any

from bench import tritonfe
from bench.procs import Placement
from bench.report import add_ratios, peer_comparison, peer_targets
from bench.run import frontend_kinds
from bench.runner import system_cpu
from bench.session import frontends_for, own_triton_cpus
from bench.spec import SWEEPS


def test_peers_are_added_to_the_frontends_once() -> None:
    assert frontend_kinds("direct,gateway", peers=True) == ["direct", "gateway", "tritonfe", "litellm"]
    assert frontend_kinds("direct,litellm", peers=True) == ["direct", "litellm", "tritonfe"]
    assert frontend_kinds("direct,gateway", peers=False) == ["direct", "gateway"]


def test_tritonfe_is_a_frontend_on_the_ensemble() -> None:
    sweep = SWEEPS["quick"]
    names = [f.name for f in frontends_for(sweep, {"direct", "gateway", "tritonfe"})]
    assert names[-1] == "tritonfe"
    tfe = frontends_for(sweep, {"tritonfe"})[0]
    assert (tfe.kind, tfe.triton_model, tfe.floor) == ("tritonfe", "ensemble", "direct/ensemble")


def test_missing_setup_is_listed(tmp_path: Path) -> None:
    env = {"TFE_WORK": str(tmp_path / "work"), "TRITON_CORE_MIRROR": str(tmp_path / "absent")}
    gaps = tritonfe.missing(env, which=lambda tool: None if tool == "g++" else "/usr/bin/" + tool)
    assert any(g.startswith("TRITON_MIRROR is not set") for g in gaps)
    assert any("does not exist" in g for g in gaps)
    assert "no g++ on PATH" in gaps
    (tmp_path / "s").mkdir()
    env = {"TFE_WORK": str(tmp_path / "work"), "TRITON_MIRROR": str(tmp_path / "s"), "TRITON_CORE_MIRROR": "."}
    assert tritonfe.missing(env, which=lambda tool: "/bin/" + tool) == []


def test_a_finished_setup_needs_no_mirror_or_compiler(tmp_path: Path) -> None:
    lay = tritonfe.layout({"TFE_WORK": str(tmp_path)})
    assert not lay.ready()
    for path in (lay.python, lay.stamp, lay.frontend_dir / "main.py"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    assert lay.ready()
    assert lay.launcher.is_file()  # the launcher is the repository's own file
    assert tritonfe.missing({"TFE_WORK": str(tmp_path)}, which=lambda tool: None) == []


def test_a_carried_setup_is_laid_out_ready_to_start(tmp_path: Path) -> None:
    packed = tmp_path / "pack"
    (packed / "openai_frontend").mkdir(parents=True)
    (packed / "openai_frontend" / "main.py").write_text("")
    (packed / "site" / "tritonserver" / "_c").mkdir(parents=True)
    (packed / "site" / "tritonserver" / "__init__.py").write_text("")
    (packed / "site" / "fastapi").mkdir()
    archive = tmp_path / "tfe.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(packed, arcname=".")
    lay = tritonfe.layout({"TFE_WORK": str(tmp_path / "work")})
    libtriton = tmp_path / "libtritonserver-x.so"
    libtriton.write_bytes(b"")
    tritonfe.install_carried(archive, lay, tmp_path / "project-site", libtriton)
    assert lay.ready()
    site = subprocess.run(
        [str(lay.python), "-c", "import sys; print([p for p in sys.path if p.endswith('site-packages')][0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert (Path(site) / "tritonserver" / "_c" / "libtritonserver.so").resolve() == libtriton.resolve()
    assert (Path(site) / "fastapi").is_dir()
    assert (Path(site) / "zz_project_venv.pth").read_text().strip() == str(tmp_path / "project-site")
    assert (lay.frontend_dir / "main.py").is_file()


def test_command_and_environment(tmp_path: Path) -> None:
    lay = tritonfe.layout({"TFE_WORK": str(tmp_path)})
    cmd = tritonfe.command(lay, Path("/r"), Path("/m"), 9300)
    assert cmd[:4] == [str(lay.python), str(lay.launcher), str(lay.frontend_dir), "--"]
    assert cmd[cmd.index("--openai-port") + 1] == "9300" and cmd[cmd.index("--tokenizer") + 1] == "/m"
    env = tritonfe.environment({"PATH": "/usr/bin"}, Path("/venv/bin"), ["/libs", "/py"], Path("/b"), "tfe_x_")
    assert env["PATH"] == "/venv/bin:/usr/bin"
    assert env["LD_LIBRARY_PATH"] == "/libs:/py"
    assert (env["TFE_BACKEND_ROOT"], env["TFE_SHM_PREFIX"]) == ("/b", "tfe_x_")
    assert tritonfe.shm_prefix(tmp_path) == tritonfe.shm_prefix(tmp_path) != tritonfe.shm_prefix(tmp_path / "x")


def test_triton_in_process_gets_triton_and_frontend_cpus() -> None:
    assert own_triton_cpus(Placement(triton=(0, 1), frontend=(1,), loadgen=(1,))) == (0, 1)
    assert own_triton_cpus(Placement(triton=tuple(range(8)), frontend=(8, 9, 10, 11))) == tuple(range(12))
    assert own_triton_cpus(Placement()) == ()


def test_system_cpu_is_frontend_plus_triton() -> None:
    assert system_cpu(1.5, 2.0) == 3.5
    assert system_cpu(3.0, None) == 3.0  # Triton in the front-end's own tree


def _row(frontend: str, repeat: int, tps: float, fe_us: float, sys_us: float, stream: bool = True, c: int = 256):
    floor = None if frontend.startswith("direct/") else "direct/ensemble"
    return {
        "frontend": frontend, "floor": floor, "label": "sweep", "concurrency": c, "prompt_tokens": 100,
        "stream": stream, "repeat": repeat, "tokens_per_s": tps, "frontend_cpu_us_per_token": fe_us,
        "system_cpu_us_per_token": sys_us, "ttft_p50_ms": 30.0, "errors": 0,
    }  # fmt: skip


def _rows(points: list[tuple[int, bool, float, float, float, float, float]]) -> list[dict[str, Any]]:
    rows = []
    for c, stream, direct, gw, gw_sys, tfe, tfe_sys in points:
        for repeat in (0, 1):
            rows += [
                _row("direct/ensemble", repeat, direct, 100.0, 900.0, stream, c),
                _row("gateway/ensemble/w1", repeat, gw, 150.0, gw_sys + repeat * 100, stream, c),
                _row("tritonfe", repeat, tfe, tfe_sys, tfe_sys, stream, c),
            ]
    add_ratios(rows)
    return rows


def test_peer_comparison_takes_medians_of_pairs_of_one_repeat() -> None:
    rows = _rows([(256, True, 2000.0, 1800.0, 1000.0, 600.0, 2000.0)])
    (tfe,) = peer_comparison(rows)
    assert tfe["peer"] == "tritonfe" and tfe["repeats"] == 2
    assert tfe["tokens_gateway_over_peer"] == 3.0
    assert tfe["gateway_system_us"] == 1050.0
    assert tfe["system_cpu_peer_over_gateway"] == (2.0 + 2000.0 / 1100.0) / 2
    assert tfe["keeps_up"] is False  # tritonfe: 0.3× direct


def test_peer_targets() -> None:
    rows = _rows(
        [
            (16, True, 800.0, 800.0, 1000.0, 800.0, 1500.0),  # both keep up, the gateway cheaper
            (256, True, 2000.0, 1900.0, 1000.0, 800.0, 2000.0),  # saturation: 2.375x
        ]
    )
    lines = peer_targets(rows)
    assert lines[0].startswith("| ≥ 2× the tokens/s") and "2.38× at c=256" in lines[0] and lines[0].endswith("yes |")
    assert "c=16" in lines[1] and lines[1].endswith("| yes |")
    rows = _rows([(16, True, 800.0, 800.0, 1000.0, 800.0, 900.0)])
    assert peer_targets(rows)[1].endswith("| **no** |")


def test_rows_of_a_dead_peer_are_not_compared() -> None:
    rows = _rows([(16, True, 800.0, 800.0, 1000.0, 800.0, 1500.0)])
    for r in rows:
        if r["frontend"] == "tritonfe":
            r.update(errors=500, requests_started=520)
    assert peer_comparison(rows) == []


def test_ttft_of_both_from_the_same_source() -> None:
    rows = _rows([(256, True, 2000.0, 1900.0, 1000.0, 800.0, 2000.0)])
    for r in rows:
        r["probe_ttft_p50_ms"] = 100.0 if r["frontend"] == "gateway/ensemble/w1" else 900.0
        if r["frontend"] == "gateway/ensemble/w1":
            r["ttft_p50_ms"] = None
    (tfe,) = peer_comparison(rows)
    assert (tfe["gateway_ttft_ms"], tfe["peer_ttft_ms"]) == (100.0, 900.0)
