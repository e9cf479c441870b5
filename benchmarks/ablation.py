"""The method family side by side on the synthetic data: four methods x three seeds, one step budget.

    python benchmarks/ablation.py [--steps 300] [--seeds 42 43 44] [--val-batches N] [--data data/synthetic]
    python benchmarks/ablation.py --config configs/demo-dinov2.yaml --steps 1000 --val-batches 4 \
        --data data/synthetic-256 --features cache/synthetic-256-dinov2 --name ablation_dinov2

Methods (all on the demo config, or --config, with schedules compressed to --steps):
- slot attention: no distillation (loss.distill_weight=0);
- dias_r: the release (distillation of the first iteration towards the last);
- full DIAS: dias_r plus redundant-slot pruning and a re-initialized iteration;
- SmoothSA: the preheater, bi-level truncated slot attention, recon + 100 * preheat (model.method=smoothsa).
Writes results/NAME.md (and prints it): FG-ARI, mBO and mIoU as mean ± std over seeds (decoder masks, the
whole val split), and the number of slots that own pixels per image against the true number of segments
(objects + background; on the first --val-batches batches), then the three baselines on the same images
(the same for every method: same K, token grid and tokens). The last column is the slots' spread: the median
cosine distance between two slots of one image, taken after the first aggregation (before any pruning), on
the same batches. Slots that collapse onto one vector score near 0; pruning merges slots closer than its
threshold (0.1 by default).

Runs take long on a CPU (a DINOv2-token run of 1,000 steps is about 15 minutes on one core), so the work is
kept between invocations: each finished run's scores go to results/NAME/<method>-<seed>.json, which a
later invocation reuses, and an unfinished run resumes from its checkpoint in --runs. Two processes may
share the work (--methods picks some); the table shows "k of 3 seeds" for a method not yet complete.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import statistics
import sys
from pathlib import Path

import torch
from machine import cpu_name

from dias.baselines import BASELINE_NAMES, BASELINE_TITLES
from dias.commands.infer import load
from dias.config import load_config
from dias.demo.run import demo_config_path
from dias.io import atomic_write_bytes
from dias.metrics import BACKGROUND_ID, IGNORE_ID
from dias.modules.redundancy import cosine_distance
from dias.runtime.distributed import DistInfo
from dias.train.checkpoint import LAST
from dias.train.features import batch_inputs
from dias.train.loaders import build_loaders
from dias.train.loop import train
from dias.train.validate import evaluate

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parents[1]
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
SLUGS = {name: re.sub(r"[^a-z0-9]+", "-", name.lower().split(" (")[0]).strip("-") for name in VARIANTS}


def run(config: Path, overrides: list[str], run_dir: Path, val_batches: int | None) -> dict[str, float]:
    """Train one variant (or finish it, from run_dir's last.pt); its scores and the baselines' from the run's
    final validation (the whole val split), and the slots with pixels per image from a second, baseline-free
    pass over `val_batches` batches."""
    cfg = load_config(config, overrides)
    result = train(cfg, run_dir, resume=(run_dir / LAST).is_file(), progress=False)
    _, _, val_loader = build_loaders(cfg, DistInfo(0, 1, torch.device("cpu")))
    if "fg_ari" not in result.val:  # stopped after its last checkpoint, before its scores were kept: score it
        full = evaluate(result.model, val_loader, mask_source=cfg.eval.mask_source, seed=cfg.eval.seed, progress=False)
        result.val = full.means() | {f"{b}/{k}": v for b, m in full.baseline_means().items() for k, v in m.items()}
    scores = dict(result.val)  # "fg_ari", ... and "kmeans/fg_ari", ...
    scores["active"], scores["segments"] = slot_counts(result.model, val_loader, cfg, val_batches)
    scores["spread"] = slot_spread(result.model, val_loader, val_batches)
    return scores


def slot_counts(model: torch.nn.Module, loader, cfg, max_batches: int | None) -> tuple[float, float]:
    """The mean number of slots that own pixels per image (the model's masks) and of true segments (objects +
    background), on the first `max_batches` batches."""
    counts = {"active": [], "segments": []}

    def count(batch, out, pred) -> None:
        for labels, gt in zip(pred, batch["mask"], strict=True):
            counts["active"].append(len(labels.unique()))
            ids = gt.unique()
            counts["segments"].append(int(((ids != IGNORE_ID) & (ids != BACKGROUND_ID)).sum()) + 1)

    evaluate(
        model, loader, mask_source=cfg.eval.mask_source, seed=cfg.eval.seed, progress=False, on_batch=count,
        max_batches=max_batches, baselines=(),
    )  # fmt: skip
    return statistics.mean(counts["active"]), statistics.mean(counts["segments"])


def slot_spread(model: torch.nn.Module, loader, max_batches: int | None) -> float:
    """Median over images and slot pairs of the cosine distance between two slots of one image, after the first
    aggregation: a full DIAS model runs without pruning and re-initialization here."""
    options = {"reinit": False} if getattr(model, "reinit", None) is not None else {}
    distances = []
    model.eval()
    with torch.no_grad():
        for index, batch in enumerate(loader):
            if index == max_batches:
                break
            slots = model(**batch_inputs(batch, "cpu"), **options).slots  # (B, K, D)
            pairs = torch.triu_indices(slots.shape[1], slots.shape[1], offset=1)
            distances.append(cosine_distance(slots)[:, pairs[0], pairs[1]].flatten())
    return torch.cat(distances).median().item()


def add_spread(path: Path, config: Path, overrides: list[str], run_dir: Path, val_batches: int | None) -> None:
    """Measure the slot spread of a run kept before the spread was measured, from its last checkpoint."""
    cfg = load_config(config, overrides)
    _, _, val_loader = build_loaders(cfg, DistInfo(0, 1, torch.device("cpu")))
    record = json.loads(path.read_text())
    record["scores"]["spread"] = slot_spread(load(run_dir / LAST, device="cpu").model, val_loader, val_batches)
    atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, help="default: the demo config (configs/demo.yaml)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--methods", nargs="+", choices=sorted(SLUGS.values()), default=None, help="run only these")
    parser.add_argument("--val-batches", type=int, default=None, help="count slots on the first N val batches")
    parser.add_argument("--data", default=None, help="synthetic dataset folder (default: the config's data.root)")
    parser.add_argument("--features", default=None, help="its cached tokens (`dias features`)")
    parser.add_argument("--name", default="ablation", help="results/NAME.md and results/NAME/ (the runs' scores)")
    parser.add_argument("--runs", type=Path, default=None, help="the run folders (default: runs/NAME)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where NAME.md and NAME/ go")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="for every run")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    config = args.config or demo_config_path()
    budget = [
        f"train.total_steps={args.steps}",
        f"optim.warmup_steps={max(1, args.steps // 20)}",
        f"train.val_every={args.steps}",
        f"train.checkpoint_every={min(args.steps, 250)}",
        "log.tensorboard=false",
        *([f"data.root={args.data}"] if args.data else []),
        *([f"data.features={args.features}"] if args.features else []),
        *args.override,
    ]
    scores_dir = args.results / args.name
    runs = args.runs or Path("runs") / args.name
    for name, overrides in VARIANTS.items():
        if args.methods is not None and SLUGS[name] not in args.methods:
            continue
        for seed in args.seeds:
            path = scores_dir / f"{SLUGS[name]}-{seed}.json"
            if path.is_file():
                kept = json.loads(path.read_text())
                if (kept["config"], kept["steps"], kept["overrides"]) != (config_label(config), args.steps, budget):
                    raise SystemExit(f"{path} holds a run of another config, budget or data; pass another --name")
                run_dir = runs / f"{SLUGS[name]}-{seed}"
                if "spread" not in kept["scores"] and (run_dir / LAST).is_file():
                    add_spread(path, config, [*budget, *overrides, f"train.seed={seed}"], run_dir, args.val_batches)
                continue
            scores = run(
                config, [*budget, *overrides, f"train.seed={seed}"], runs / f"{SLUGS[name]}-{seed}", args.val_batches
            )
            record = {"config": config_label(config), "steps": args.steps, "overrides": budget, "scores": scores,
                      "machine": cpu_name(), "date": datetime.date.today().isoformat()}  # fmt: skip
            atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
            print(f"{name}, seed {seed}: FG-ARI {scores['fg_ari']:.3f}, mBO {scores['mbo']:.3f}", flush=True)
    text = table(scores_dir, config, args)
    atomic_write_bytes(args.results / f"{args.name}.md", text.encode("utf-8"))
    print(text)


def config_label(config: Path) -> str:
    """The config as a kept run records it: relative to the repository when inside it (the packaged demo config
    too, in a checkout), so that the record names no folder of the machine it ran on."""
    absolute = Path(os.path.abspath(config))  # not resolve(): configs/ holds links into the package's configs
    return absolute.relative_to(REPO).as_posix() if absolute.is_relative_to(REPO) else str(config)


def table(scores_dir: Path, config: Path, args: argparse.Namespace) -> str:
    """The Markdown table of every method's kept runs (and the baselines, from the last method's runs)."""
    lines = [
        f"# {config.name}, {args.steps} steps per run, seeds {args.seeds}, val split, decoder masks",
        "",
        f"`python benchmarks/ablation.py {' '.join(sys.argv[1:])}`; {cpu_name()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {datetime.date.today().isoformat()}",
        "",
        "| variant | FG-ARI | mBO | mIoU | slots with pixels / true segments | slot spread |",
        "|---|---|---|---|---|---|",
    ]
    rows: list[dict[str, float]] = []
    for name in VARIANTS:
        found = [scores_dir / f"{SLUGS[name]}-{seed}.json" for seed in args.seeds]
        rows = [json.loads(path.read_text())["scores"] for path in found if path.is_file()] or rows
        done = sum(path.is_file() for path in found)
        if done == 0:
            lines.append(f"| {name} | not run yet | | | | |")
            continue
        active = statistics.mean(row["active"] for row in rows)
        segments = statistics.mean(row["segments"] for row in rows)
        cells = " | ".join(_cell(rows, key) for key in ("fg_ari", "mbo", "miou"))
        partial = "" if done == len(found) else f" ({done} of {len(found)} seeds)"
        spreads = [row["spread"] for row in rows if "spread" in row]
        spread = f"{statistics.mean(spreads):.3f}" if len(spreads) == len(rows) else ""
        lines.append(f"| {name}{partial} | {cells} | {active:.2f} / {segments:.2f} | {spread} |")
    for baseline in BASELINE_NAMES if rows else ():
        cells = " | ".join(_cell(rows, f"{baseline}/{key}") for key in ("fg_ari", "mbo", "miou"))
        lines.append(f"| {BASELINE_TITLES[baseline]} | {cells} | | |")
    return "\n".join(lines) + "\n"


def _cell(rows: list[dict[str, float]], key: str) -> str:
    """Mean ± sample std over seeds, x100."""
    values = [100 * row[key] for row in rows]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


if __name__ == "__main__":
    main()
