"""bench.ttft_stages: the probe wraps what it names and notes the marks; the table follows each request's marks."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from bench.ttft_stages import CHAIN, Request, segments, timeline

PROBE = Path(__file__).resolve().parents[2] / "bench" / "stage_probe"


def probe_module() -> ModuleType:
    """The probe's code as a module of its own name (not as this process's sitecustomize)."""
    spec = importlib.util.spec_from_file_location("stage_probe_under_test", PROBE / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_stage_the_probe_names_exists_and_makes_the_marks_the_table_reads() -> None:
    probe = probe_module()
    for module_name, path, _, _, _ in probe.STAGES:
        importlib.import_module(module_name)
        assert probe._resolve(module_name, path) is not None, f"{module_name}.{path} is gone: update bench/stage_probe"
    marks = {mark for stage in probe.STAGES for mark in stage[2:4] if mark}
    assert set(CHAIN) <= marks


def test_a_process_with_the_probe_notes_each_call_and_dumps_on_sigusr2(tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    code = (
        "import os, signal, time\n"
        "from gateway.core import truncation\n"
        "import gateway.api.chat\n"
        "assert truncation.render_prompt.__wrapped__ is not None\n"
        "try:\n"
        "    truncation.render_prompt(None, None)\n"
        "except Exception:\n"
        "    pass\n"
        "os.kill(os.getpid(), signal.SIGUSR2)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROBE), os.getcwd()]), "BENCH_STAGE_PROBE": str(notes)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [mark for mark, _ in json.loads(notes.read_text())] == ["template"]  # it raised: no end mark


def notes_of(start: float, step: float) -> list[tuple[str, float]]:
    """One request's marks, `step` seconds apart, with a second write before the first content."""
    marks = [*CHAIN[:-1], "written", "write", "written"]
    return [(mark, start + step * (index + 1)) for index, mark in enumerate(marks)]


def test_a_request_timeline_takes_each_mark_after_the_one_before_and_the_last_write_before_the_content() -> None:
    first, second = Request(10.0, 10.0 + 0.001 * (len(CHAIN) + 2.5)), Request(20.0, 20.5)
    notes = notes_of(10.0, 0.001) + notes_of(20.0, 0.001)
    points = timeline(notes, first, until=second.sent)
    assert [mark for mark, _ in points] == ["sent", *CHAIN, "first content at the client"]
    assert points[-2][1] == pytest.approx(10.0 + 0.001 * (len(CHAIN) + 2))  # the second write's end
    rows = dict(segments([points, timeline(notes, second, until=float("inf"))]))
    assert rows["sent → bytes in"] == pytest.approx([1000.0, 1000.0])
    assert rows["TTFT at the client"][0] == pytest.approx(1000.0 * (len(CHAIN) + 2.5))
    less = rows["TTFT less the wait for Triton's first response"][0]
    assert less == pytest.approx(rows["TTFT at the client"][0] - rows["gRPC call made → response in"][0])


def test_a_mark_missing_from_a_request_is_an_error_not_a_wrong_table() -> None:
    notes = [note for note in notes_of(10.0, 0.001) if note[0] != "template"]
    with pytest.raises(ValueError, match="no 'template'"):
        timeline(notes, Request(10.0, 11.0), until=float("inf"))
