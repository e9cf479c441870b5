"""How many slots a finished run's model uses, and how far apart they are: the two columns of
benchmarks/ablation.py, for runs trained by `dias train` on their own schedule.

    python benchmarks/slot_usage.py runs/full-dias-6000-42 runs/full-dias-6000-43 [--val-batches 4] [--out FILE]

Each RUN folder is a finished `dias train` run (its last.pt and config.yaml; data.root and data.features are
read relative to the current folder, as training read them). Per run: the step and its last validation's
FG-ARI and mBO from the training log, with the best image-blind partition's and k-means' on the same images;
then, on the first --val-batches val batches, the slots that own pixels per image (the model's masks, so with
the full method's pruning where the run has it) against the true segments (objects + background), and the
slots' spread, the median cosine distance between two slots of one image after the first aggregation.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch
from ablation import slot_counts, slot_spread
from machine import cpu_name

from dias.commands.infer import load
from dias.config import load_config
from dias.io import atomic_write_bytes
from dias.runtime.distributed import DistInfo
from dias.train.checkpoint import LAST
from dias.train.loaders import build_loaders
from dias.train.log import read_metrics


def measure(run: Path, val_batches: int) -> list[str]:
    """One table row of cells for a run."""
    if not (run / LAST).is_file():
        raise SystemExit(f"{run} has no {LAST}: pass a finished `dias train` run")
    validations = [r for r in read_metrics(run) if "val/fg_ari" in r]
    if not validations:
        raise SystemExit(f"{run} logged no validation: train it with train.val_every at most its total_steps")
    last = validations[-1]
    cfg = load_config(run / "config.yaml", [])
    model = load(run / LAST, device="cpu").model.eval()
    _, _, loader = build_loaders(cfg, DistInfo(0, 1, torch.device("cpu")))
    active, segments = slot_counts(model, loader, cfg, val_batches)

    def pair(prefix: str) -> str:
        return f"{100 * last[f'val/{prefix}fg_ari']:.1f} / {100 * last[f'val/{prefix}mbo']:.1f}"

    return [
        str(run), f"{int(last['step']):,}", pair(""), pair("grid/"), pair("kmeans/"), f"{active:.2f} / {segments:.2f}",
        f"{slot_spread(model, loader, val_batches):.3f}",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="finished dias train runs (last.pt, config.yaml)")
    parser.add_argument("--val-batches", type=int, default=4, help="count slots on the first N val batches")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    header = ["run", "step", "FG-ARI / mBO", "grid", "k-means", "slots with pixels / true segments", "slot spread"]
    lines = [
        "# Slot usage of finished runs, val split",
        "",
        f"`python benchmarks/slot_usage.py {' '.join(sys.argv[1:])}`; {cpu_name()}, torch {torch.__version__}, "
        f"{datetime.date.today().isoformat()}. Scores ×100 from each run's last validation (the whole val split, "
        "baselines on the same images); slots on the first val batches.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(measure(run, args.val_batches)) + " |" for run in args.runs),
    ]
    text = "\n".join(lines) + "\n"
    if args.out is not None:
        atomic_write_bytes(args.out, text.encode("utf-8"))
    print(text, end="")


if __name__ == "__main__":
    main()
