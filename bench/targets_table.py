"""The targets table of bench/README.md against git: which rows quote a run older than the last change under
`gateway/` (`python -m bench.report --stale`), and which commit a results folder measured (`--commit-of`)."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

TABLE_START = "<!-- targets table"
TABLE_END = "<!-- end of targets table -->"
COMMIT_RE = re.compile(r"\b[0-9a-f]{7,40}\b")
SHOWN_FILES = 3  # files under gateway/ a stale row's line names (then "and N more")


@dataclass(frozen=True)
class TargetRow:
    """One row of the table: its number, its target, its status and the commit whose run it quotes (None: it
    names none)."""

    number: str
    target: str
    status: str
    commit: str | None

    @property
    def measured(self) -> bool:
        """Whether the row quotes a run at all (a target not measured yet names no commit)."""
        return self.commit is not None or "not measured" not in self.status.lower()


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def target_rows(readme: str) -> list[TargetRow]:
    """The rows of the targets table (between its markers); the commit is the first hex name in the `commit`
    column."""
    start, end = readme.find(TABLE_START), readme.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"no targets table between `{TABLE_START} ...` and `{TABLE_END}`")
    lines = [line for line in readme[start:end].splitlines() if line.startswith("|")]
    if not lines:
        return []
    header = [cell.lower() for cell in _cells(lines[0])]
    missing = [name for name in ("status", "commit") if name not in header]
    if missing:
        raise ValueError(f"the targets table has no `{'`, `'.join(missing)}` column")
    status, commit = header.index("status"), header.index("commit")
    rows = []
    for line in lines[2:]:  # after the header and its separator
        cells = [*_cells(line), "", ""][: len(header)]
        found = COMMIT_RE.search(cells[commit])
        rows.append(TargetRow(cells[0], cells[1], cells[status], found.group(0) if found else None))
    return rows


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A git command in `root`, its output as text."""
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=check)


def last_gateway_change(root: Path, ref: str = "HEAD") -> str:
    """The full name of the last commit (up to `ref`) that changed anything under gateway/."""
    return git(root, "log", "-1", "--format=%H", ref, "--", "gateway/").stdout.strip()


def staleness(root: Path, row: TargetRow, last_change: str) -> str | None:
    """Why a row is out of date (None: its commit has the last change under gateway/), with the files changed."""
    if row.commit is None:
        return "names no commit"
    if git(root, "cat-file", "-e", f"{row.commit}^{{commit}}", check=False).returncode != 0:
        return f"{row.commit} is not a commit of this repository"
    if git(root, "merge-base", "--is-ancestor", last_change, row.commit, check=False).returncode == 0:
        return None
    since = git(root, "rev-list", "--count", f"{row.commit}..{last_change}", "--", "gateway/").stdout.strip()
    changed = git(root, "diff", "--name-only", row.commit, last_change, "--", "gateway/").stdout.split()
    files = ", ".join(name.removeprefix("gateway/") for name in changed[:SHOWN_FILES])
    more = f" and {len(changed) - SHOWN_FILES} more" if len(changed) > SHOWN_FILES else ""
    return f"measured on {row.commit}; {since} commits have changed gateway/ since ({files}{more})"


def stale_report(root: Path, readme: Path) -> tuple[list[str], int]:
    """Lines listing the out-of-date rows, and how many there are."""
    last = last_gateway_change(root)
    subject = git(root, "log", "-1", "--format=%h %cs %s", last).stdout.strip()
    lines = [f"last change under gateway/: {subject}"]
    rows = target_rows(readme.read_text())
    stale = 0
    for row in (row for row in rows if row.measured):
        why = staleness(root, row, last)
        if why is not None:
            stale += 1
            target = row.target if len(row.target) <= 60 else row.target[:59] + "…"
            lines.append(f"stale  {row.number}  {target}: {why}")
    if not stale:
        lines.append("every measured row quotes a run of the current gateway/")
    unmeasured = [row.number for row in rows if not row.measured]
    if unmeasured:
        lines.append(f"not measured yet: {', '.join(unmeasured)}")
    return lines, stale


def tree_digest(root: Path, commit: str) -> str:
    """bench.run's `gateway_source_sha256` of the gateway/ package as it is in `commit`."""
    names = git(root, "ls-tree", "-r", "--name-only", commit, "--", "gateway/").stdout.split("\n")
    paths = sorted((PurePosixPath(n).relative_to("gateway") for n in names if n.endswith(".py")), key=lambda p: p.parts)
    request = "".join(f"{commit}:gateway/{path}\n" for path in paths).encode()
    blobs = subprocess.run(
        ["git", "-C", str(root), "cat-file", "--batch"], input=request, capture_output=True, check=True
    ).stdout
    digest = hashlib.sha256()
    for path in paths:
        header, _, blobs = blobs.partition(b"\n")
        size = int(header.split()[2])
        digest.update(str(path).encode() + b"\0" + blobs[:size])
        blobs = blobs[size + 1 :]  # the blob and the newline after it
    return digest.hexdigest()[:16]


def commit_of(root: Path, results: Path) -> str | None:
    """The commit (newest first) whose gateway/ a results folder measured, by its meta.json's source digest."""
    digest = json.loads((results / "meta.json").read_text()).get("gateway_source_sha256")
    if not digest:
        return None
    for commit in git(root, "log", "--format=%H", "--", "gateway/").stdout.split():
        if tree_digest(root, commit) == digest:
            return commit
    return None


def main(argv: list[str]) -> int:
    """`--stale`: print the out-of-date rows (exit 1 if any); `--commit-of RESULTS_DIR`: print the commit."""
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("--stale", action="store_true", help="rows quoting a run older than gateway/'s last change")
    parser.add_argument("--readme", type=Path, default=root / "bench" / "README.md", help="the table's file")
    parser.add_argument("--commit-of", type=Path, metavar="RESULTS_DIR", help="the commit whose gateway/ it measured")
    args = parser.parse_args(argv)
    if args.commit_of:
        commit = commit_of(root, args.commit_of)
        print(commit or "no commit's gateway/ matches the run's gateway_source_sha256 (uncommitted code?)")
        return 0 if commit else 1
    try:
        lines, stale = stale_report(root, args.readme)
    except ValueError as exc:  # no table, or one without its commit column: say so, no traceback
        parser.error(f"{args.readme}: {exc}")
    print("\n".join(lines))
    return 1 if stale else 0
