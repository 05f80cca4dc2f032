"""How much of what a device run can bring (64 MiB) the working tree and the carry take, and what is left.

A device run brings the repository's working tree (tracked files, untracked files git does not ignore, and
`shared/` where the checkout has one) plus the ignored paths it is told to carry (here `bench/offline/carry`).
`python bench/offline/travel_size.py [--root DIR] [CARRIED_PATH ...]` prints the budget and exits 1 when over it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LIMIT_BYTES = 64 * 1024 * 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class Budget:
    """Bytes of the tree and of the carried paths against the limit."""

    tree_bytes: int
    carry_bytes: int
    limit_bytes: int = LIMIT_BYTES

    @property
    def total_bytes(self) -> int:
        """Everything that travels."""
        return self.tree_bytes + self.carry_bytes

    @property
    def left_bytes(self) -> int:
        """What is left under the limit (negative when over it)."""
        return self.limit_bytes - self.total_bytes

    def describe(self) -> str:
        """One line: tree + carry = total of limit, and what is left or how much over."""
        head = (
            f"tree {self.tree_bytes / MIB:.1f} MiB + carry {self.carry_bytes / MIB:.1f} MiB = "
            f"{self.total_bytes / MIB:.1f} MiB of {self.limit_bytes / MIB:.0f} MiB"
        )
        if self.left_bytes < 0:
            return f"{head}: {-self.left_bytes / MIB:.1f} MiB over"
        return f"{head}: {self.left_bytes / MIB:.1f} MiB left"


def tree_files(root: Path) -> set[Path]:
    """The files that travel with the working tree: tracked, untracked but not ignored, and shared/."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    files = {root / name for name in listed.split("\0") if name}
    shared = root / "shared"
    if shared.is_dir():
        files |= {path for path in shared.rglob("*") if not path.is_dir()}
    return files


def size_of(paths: set[Path]) -> int:
    """Bytes of these files and of every file under these folders (a deleted tracked file counts nothing)."""
    total = 0
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            total += sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())
        elif path.exists() or path.is_symlink():
            total += path.lstat().st_size
    return total


def budget(root: Path, carried: list[Path]) -> Budget:
    """The tree of `root` and the carried paths (relative to `root`) against the limit."""
    return Budget(tree_bytes=size_of(tree_files(root)), carry_bytes=size_of({root / path for path in carried}))


def main(argv: list[str] | None = None) -> int:
    """Print the budget; exit 1 when the tree and the carry are over the limit."""
    parser = argparse.ArgumentParser(prog="python bench/offline/travel_size.py", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("carried", nargs="*", type=Path, default=[Path("bench/offline/carry")])
    args = parser.parse_args(argv)
    result = budget(args.root, args.carried)
    print(result.describe())
    if result.left_bytes < 0:
        print(
            "over what a device run can bring: shrink the carry (SKIP_RE in prepare_carry.sh) or the tree",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
