"""bench/offline: what a device run brings (tree + carry against 64 MiB), and what needed_dists says it lacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.offline import travel_size

OFFLINE = Path(__file__).resolve().parents[2] / "bench" / "offline"


def git_repo(root: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".gitignore").write_text("ignored.bin\ncarry/\n")  # 19 bytes, untracked and not ignored
    (root / "tracked.txt").write_bytes(b"t" * 100)
    subprocess.run(["git", "-C", str(root), "add", "tracked.txt"], check=True)
    (root / "untracked.txt").write_bytes(b"u" * 50)
    (root / "ignored.bin").write_bytes(b"i" * 1000)
    (root / "carry").mkdir()
    (root / "carry" / "site.tar.xz").write_bytes(b"c" * 300)
    (root / "carry" / "cache.tar.xz").write_bytes(b"c" * 20)
    return root


def test_the_tree_is_what_git_does_not_ignore_and_the_carry_is_counted_apart(tmp_path: Path) -> None:
    root = git_repo(tmp_path)
    (root / "shared").mkdir()
    (root / "shared" / "notes.md").write_bytes(b"s" * 7)
    result = travel_size.budget(root, [Path("carry")])
    assert result.tree_bytes == 100 + 50 + 19 + 7  # not ignored.bin, not the carry
    assert result.carry_bytes == 320
    assert result.left_bytes == travel_size.LIMIT_BYTES - 496


def test_a_deleted_tracked_file_travels_as_nothing(tmp_path: Path) -> None:
    root = git_repo(tmp_path)
    (root / "tracked.txt").unlink()
    assert travel_size.budget(root, []).tree_bytes == 50 + 19


def test_over_the_limit_says_by_how_much_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = git_repo(tmp_path)
    with (root / "carry" / "triton.tar.xz").open("wb") as f:
        f.truncate(travel_size.LIMIT_BYTES)  # sparse: its size counts, no disk is used
    assert travel_size.main(["--root", str(root), "carry"]) == 1
    out = capsys.readouterr()
    assert "of 64 MiB: 0.0 MiB over" in out.out
    assert "shrink the carry" in out.err


def test_under_the_limit_says_what_is_left() -> None:
    line = travel_size.Budget(tree_bytes=4 * travel_size.MIB, carry_bytes=57 * travel_size.MIB).describe()
    assert line == "tree 4.0 MiB + carry 57.0 MiB = 61.0 MiB of 64 MiB: 3.0 MiB left"


def test_needed_dists_names_the_module_it_cannot_import() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import needed_dists as n; "
        "n.MODULES[:] = ['json', 'no_such_module_for_the_carry']; raise SystemExit(n.main())"
    )
    done = subprocess.run([sys.executable, "-c", code, str(OFFLINE)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "no_such_module_for_the_carry: ModuleNotFoundError" in done.stderr
    assert "pip install -e '.[bench]'" in done.stderr
    assert done.stdout == ""
