"""The repository is a package, not a results archive: what `git ls-files` holds stays small and self-contained.

- No tracked file over 1 MB outside the bundled demo models, the test fixtures and runs-in-progress/:
  checkpoints, logs and reports of runs live under runs/ (git-ignored), the record of experiments in
  research/ is Markdown and small pictures. runs-in-progress/ holds the last.pt of a bundled model's
  training run that spans working sessions, once, until it is packaged (its README says which).
- No tracked text file points outside the repository (a sibling `../shared/` folder) or to the issue
  tracker: the docs and comments carry the facts themselves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_BYTES = 1_000_000
LARGE_FILES_ALLOWED = ("src/dias/demo_model/", "src/dias/demo_model_dinov2/", "tests/fixtures/", "runs-in-progress/")
TEXT_SUFFIXES = {".md", ".py", ".sh", ".yaml", ".yml", ".toml", ".txt", ".json", ".cfg", ".ini", ".tsv", ""}
# "../shared/", "issue 21", "issue #3", "issues/12", "the issue asks"; the outside reference notes by name
# ("SPEC §6", "TRAJECTORY.md"), which a reader of the repository does not have
OUTSIDE_REFERENCE = re.compile(
    r"\.\./shared\b|(?i:\bissues? ?#?\d+|\bissues/\d+|\bthe issue\b)|\bSPEC\b"
    r"|\b(?:FIXTURES|SMOOTHSA|TRAJECTORY|METHOD|VIDEO|STYLE)\.md\b"
)
THIS_FILE = Path(__file__).resolve().relative_to(REPO).as_posix()


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"git ls-files failed: {result.stderr.decode(errors='replace').strip()}")
    return [name for name in result.stdout.decode().split("\0") if name and (REPO / name).is_file()]


def test_no_tracked_file_over_1_mb_outside_the_demo_model_and_the_fixtures():
    large = [
        f"{name} ({(REPO / name).stat().st_size / 1e6:.1f} MB)"
        for name in tracked_files()
        if not name.startswith(LARGE_FILES_ALLOWED) and (REPO / name).stat().st_size > MAX_BYTES
    ]
    assert not large, "tracked files over 1 MB (keep run outputs under runs/, out of git):\n" + "\n".join(large)


def test_no_tracked_text_refers_outside_the_repository_or_to_the_issue_tracker():
    hits = []
    for name in tracked_files():
        if name == THIS_FILE or Path(name).suffix not in TEXT_SUFFIXES:
            continue
        try:
            text = (REPO / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE_REFERENCE.search(line):
                hits.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not hits, "references to files outside the repository or to the issue tracker:\n" + "\n".join(hits)
