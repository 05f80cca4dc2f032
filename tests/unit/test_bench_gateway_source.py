"""bench.frontends: a baseline gateway (`--baseline`, `--source`) really runs the baseline's package."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.frontends import REPO_ROOT, gateway_python


def _fake_gateway(folder: Path) -> Path:
    package = folder / "gateway"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("import gateway\nprint(gateway.__file__)\n")
    return package


def test_a_baseline_package_is_imported_even_from_the_repository_root(tmp_path: Path) -> None:
    package = _fake_gateway(tmp_path / "baseline")
    command, env = gateway_python(str(tmp_path / "baseline"))
    out = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert Path(out.strip()) == package / "__init__.py"


def test_without_a_baseline_the_repositorys_package_runs_wherever_it_is_started(tmp_path: Path) -> None:
    _fake_gateway(tmp_path)  # a `gateway/` in the working directory must not shadow the repository's
    command, env = gateway_python()
    run = subprocess.run([*command, "serve", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "--triton-url" in run.stdout
