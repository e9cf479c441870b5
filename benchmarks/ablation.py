"""The method family side by side on the synthetic data: four methods x three seeds, one step budget.

    python benchmarks/ablation.py [--steps 300] [--seeds 42 43 44] [--val-batches N] [--data data/synthetic]

Methods (all on configs/demo.yaml, schedules compressed to --steps):
- slot attention: no distillation (loss.distill_weight=0);
- dias_r: the release (distillation of the first iteration towards the last);
- full DIAS: dias_r plus redundant-slot pruning and a re-initialized iteration;
- SmoothSA: the preheater, bi-level truncated slot attention, recon + 100 * preheat (model.method=smoothsa).
Prints FG-ARI, mBO and mIoU as mean ± std over seeds (decoder masks, the whole val split), and the number
of slots that own pixels per image against the true number of segments (objects + background; on the
first --val-batches batches), then the three baselines on the same images (the same for every method:
same K, token grid and tokens).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from pathlib import Path

import torch

from dias.baselines import BASELINE_NAMES, BASELINE_TITLES
from dias.config import load_config
from dias.demo.run import demo_config_path
from dias.metrics import BACKGROUND_ID, IGNORE_ID
from dias.runtime.distributed import DistInfo
from dias.train.loaders import build_loaders
from dias.train.loop import train
from dias.train.validate import evaluate

VARIANTS = {
    "slot attention (no distillation)": ["model.method.distill_weight=0.0"],
    "dias_r (release)": [],
    "full DIAS (pruning + re-init)": [
        "model.method.reinit.enabled=true",
        "model.method.reinit.min_clusters=3",  # as in configs/dias-full-*.yaml
        "model.method.reinit.prob_schedule=linear",
    ],
    "SmoothSA": [
        "model.method=smoothsa",
        "model.initializer=preheated",
        "model.slot_attention.truncate=bi-level",
        "loss={}",  # SmoothSA's objective: its own loss keys, at their defaults (preheat weight 100)
    ],
}


def run(overrides: list[str], run_dir: Path, val_batches: int | None) -> dict[str, float]:
    """Train one variant; its scores and the baselines' from the run's final validation (the whole val split),
    and the slots with pixels per image from a second, baseline-free pass over `val_batches` batches."""
    cfg = load_config(demo_config_path(), overrides)
    result = train(cfg, run_dir, progress=False)
    _, _, val_loader = build_loaders(cfg, DistInfo(0, 1, torch.device("cpu")))
    counts = {"active": [], "segments": []}

    def count(batch, out, pred) -> None:
        for labels, gt in zip(pred, batch["mask"], strict=True):
            counts["active"].append(len(labels.unique()))
            ids = gt.unique()
            counts["segments"].append(int(((ids != IGNORE_ID) & (ids != BACKGROUND_ID)).sum()) + 1)

    evaluate(
        result.model, val_loader, mask_source=cfg.eval.mask_source, seed=cfg.eval.seed, progress=False, on_batch=count,
        max_batches=val_batches, baselines=(),
    )  # fmt: skip
    scores = dict(result.val)  # "fg_ari", ... and "kmeans/fg_ari", ...
    scores["active"] = statistics.mean(counts["active"])
    scores["segments"] = statistics.mean(counts["segments"])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--val-batches", type=int, default=None, help="count slots on the first N val batches")
    parser.add_argument("--data", default=None, help="synthetic dataset folder (default: the config's data.root)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="for every run")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    budget = [
        f"train.total_steps={args.steps}",
        f"optim.warmup_steps={max(1, args.steps // 20)}",
        f"train.val_every={args.steps}",
        f"train.checkpoint_every={args.steps}",
        "log.tensorboard=false",
        *([f"data.root={args.data}"] if args.data else []),
        *args.override,
    ]
    print(f"# demo config, {args.steps} steps per run, seeds {args.seeds}, val split, decoder masks")
    print("| variant | FG-ARI | mBO | mIoU | slots with pixels / true segments |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in VARIANTS.items():
            rows = [
                run([*budget, *overrides, f"train.seed={seed}"], Path(tmp) / f"{name}-{seed}", args.val_batches)
                for seed in args.seeds
            ]

            active = statistics.mean(row["active"] for row in rows)
            segments = statistics.mean(row["segments"] for row in rows)
            cells = " | ".join(_cell(rows, key) for key in ("fg_ari", "mbo", "miou"))
            print(f"| {name} | {cells} | {active:.2f} / {segments:.2f} |", flush=True)
        for baseline in BASELINE_NAMES:
            cells = " | ".join(_cell(rows, f"{baseline}/{key}") for key in ("fg_ari", "mbo", "miou"))
            print(f"| {BASELINE_TITLES[baseline]} | {cells} | |")


def _cell(rows: list[dict[str, float]], key: str) -> str:
    """Mean ± sample std over seeds, x100."""
    values = [100 * row[key] for row in rows]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


if __name__ == "__main__":
    main()
