"""`dias demo` as a new user runs it: a fresh clone of the repository, timed from start to end.

Clones HEAD of this repository into a temporary folder (committed files only, so what ships is what is
measured), runs `python -m dias demo` there with that clone's code (PYTHONPATH=CLONE/src), its data and
everything it writes inside the clone, and records the wall time, the exit code and what it printed.

    python benchmarks/demo_run.py                                   # results/demo_run.md
    python benchmarks/demo_run.py --name demo_run_lr1e-9 optim.lr=1e-9   # the check must say "does not"

The installing is not timed (README command 1 installs before it runs the demo); the data generation is,
and so is getting the DINOv2 weights: the demo runs with DIAS_HOME in an empty temporary folder, so it
fetches them as a new user's first run does (--stored-weights uses the ones already in this user's cache).
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_name

from dias.io import atomic_write_bytes
from dias.weights.store import HOME_ENV

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="demo_run", help="stem of the file written to benchmarks/results/")
    parser.add_argument("--out", type=Path, default=None, help="the file written (default: results/NAME.md)")
    parser.add_argument("--stored-weights", action="store_true", help="do not fetch the weights afresh")
    parser.add_argument("args", nargs="*", help="arguments of `dias demo`, e.g. optim.lr=1e-9 or --minutes 3")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "dias"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True)
        env = {**os.environ, "PYTHONPATH": str(clone / "src")}
        if not args.stored_weights:
            env[HOME_ENV] = str(Path(tmp) / "dias-home")
        where = subprocess.run(
            [sys.executable, "-c", "import dias; print(dias.__file__)"], cwd=clone, env=env, capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not where.startswith(str(clone)):
            raise SystemExit(f"the clone's dias is not the one imported ({where}); uninstall the editable copy")
        command = [sys.executable, "-m", "dias", "demo", *args.args]
        start = time.monotonic()
        result = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - start
    lines = [
        f"# `dias demo {' '.join(args.args)}` in a fresh clone".replace("  ", " "),
        "",
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, commit {commit.stdout.strip()}, "
        f"{datetime.date.today().isoformat()} (`python benchmarks/demo_run.py --name {args.name} "
        f"{' '.join(args.args)}`)".replace(" `)", "`)"),
        "",
        f"**Wall time: {seconds / 60:.1f} minutes** ({seconds:.0f} s), data generation included"
        + ("" if args.stored_weights else ", and getting the backbone's weights afresh")
        + f"; exit code {result.returncode}.",
        "",
        "What it printed:",
        "",
        "```",
        result.stdout.rstrip(),
        "```",
    ]
    if result.returncode not in (0, 3):
        lines += ["", "Its error output (last lines):", "", "```", *result.stderr.splitlines()[-20:], "```"]
    text = "\n".join(lines) + "\n"
    atomic_write_bytes(args.out or RESULTS / f"{args.name}.md", text.encode("utf-8"))
    print(text)


if __name__ == "__main__":
    main()
