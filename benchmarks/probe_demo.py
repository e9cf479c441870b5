"""`dias probe` on the bundled demo model: does it know the shapes of the objects its slots hold?

    python benchmarks/probe_demo.py [--steps 300] [--data data/synthetic]   # results/probe_demo.md
    python benchmarks/probe_demo.py --model dinov2 --data data/synthetic-256 \
        --features cache/synthetic-256-dinov2                                # results/probe_demo_dinov2.md

Trains the recognition probe (dias.commands.probe) on the bundled model's frozen slots for the synthetic
shape of each matched object (8 shapes), with its baselines, and writes the table, the wall time and the
machine. Make the data first (`dias prepare synthetic --out data/synthetic`, or `dias demo`; for the DINOv2
model scripts/train_demo_model.sh makes the data and its token cache, which --features names).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_name

from dias.commands.probe import format_probe, run_probe
from dias.data.records import load_header, split_path
from dias.demo.reference import COLOUR, REFERENCE_PACKAGE_DIRS, bundled_reference_dir
from dias.io import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--model", choices=sorted(REFERENCE_PACKAGE_DIRS), default=COLOUR, help="bundled model")
    parser.add_argument("--features", default=None, help="its cached tokens of --data (`dias features`)")
    parser.add_argument("--out", type=Path, default=None, help="the file written (default: results/probe_demo*.md)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="probe config")
    args = parser.parse_args()
    weights = bundled_reference_dir(args.model) / "model.safetensors"
    overrides = [f"data.root={args.data}", "probe.attribute=shape", f"probe.total_steps={args.steps}", *args.override]
    if args.features is not None:
        overrides.append(f"data.features={args.features}")
    out = args.out or RESULTS / ("probe_demo.md" if args.model == COLOUR else f"probe_demo_{args.model}.md")
    load = os.getloadavg()[0]  # other work on the machine stretches the wall time; the table does not change
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_probe(weights, Path(tmp) / "probe", overrides=overrides)
    seconds = time.monotonic() - start
    num_val = load_header(split_path(args.data, "val"))["info"]["num_images"]
    text = "\n".join(
        [
            f"# The recognition probe on the bundled {args.model} demo model (synthetic shapes, val split)",
            "",
            f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {datetime.date.today().isoformat()} "
            f"(`python benchmarks/probe_demo.py {' '.join(sys.argv[1:])}`); {args.steps} probe steps of 32 images, "
            f"scored on the {num_val:,} val images; **{seconds / 60:.1f} minutes** in all (load average "
            f"{load:.1f} at the start).",
            "",
            format_probe(result.metrics, result.matching),
            "",
            "Top-1 / top-3 / box IoU x100, micro-averaged over the matched objects; 8 shapes (chance top-1 12.5).",
        ]
    )
    atomic_write_bytes(out, (text + "\n").encode("utf-8"))
    print(text)


if __name__ == "__main__":
    main()
