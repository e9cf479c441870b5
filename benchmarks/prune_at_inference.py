"""Pruning and re-initialization switched on at inference only, in DIAS models trained without them.

    python benchmarks/prune_at_inference.py runs/ablation_dinov2/dias-r-42 runs/ablation_dinov2/dias-r-43 \
        runs/ablation_dinov2/dias-r-44 [--thresholds 0 0.02 0.05 0.1] [--min-clusters 3] [--out FILE]

Each RUN folder is a finished `dias train` run (its last.pt and config.yaml; data.root and data.features are
read relative to the current folder, as training read them). Every run is scored on its whole val split (decoder
masks) as trained, then with the full method's merge of redundant slots and one re-initialized slot-attention
iteration added at inference, once per threshold (complete linkage on the cosine distance between slots; a
sample left with fewer than --min-clusters clusters keeps every slot, as in the configs). At threshold 0 nothing
merges, so that row is the re-initialized iteration alone: one more slot-attention iteration. The model's weights
are the same in every row: this is the full method's inference step on a model that never trained with it.
Prints (and with --out writes) FG-ARI, mBO and the slots that own pixels per image, mean ± sample std over runs,
then the image-blind partitions and k-means on the backbone tokens, scored on the same images with the model's K.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import torch
from machine import cpu_name

from dias.baselines import BASELINE_NAMES, BASELINE_TITLES
from dias.commands.infer import load
from dias.config import load_config
from dias.io import atomic_write_bytes
from dias.methods.dias.model import Reinit
from dias.runtime.distributed import DistInfo
from dias.train.checkpoint import LAST
from dias.train.loaders import build_loaders
from dias.train.validate import evaluate

ONE_MORE_ITERATION = "re-initialized iteration at inference, threshold 0 (nothing merges)"


def score(model: torch.nn.Module, loader, cfg, baselines: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    """{"model": FG-ARI, mBO and the mean number of slots that own pixels per image} on the whole loader, and
    {baseline: FG-ARI, mBO} for each of `baselines`, scored on the same images."""
    active = []

    def count(batch, out, pred) -> None:
        active.extend(len(labels.unique()) for labels in pred)

    result = evaluate(
        model, loader, mask_source=cfg.eval.mask_source, seed=cfg.eval.seed, progress=False, on_batch=count,
        baselines=baselines,
    )  # fmt: skip
    means = result.means()
    scores = {"model": {"fg_ari": means["fg_ari"], "mbo": means["mbo"], "active": statistics.mean(active)}}
    for name, metrics in result.baseline_means().items():
        scores[name] = {"fg_ari": metrics["fg_ari"], "mbo": metrics["mbo"]}
    return scores


def measure(run: Path, thresholds: list[float], min_clusters: int) -> dict[str, dict[str, float]]:
    """{setting: scores} of one run: "as trained", then one entry per threshold."""
    cfg = load_config(run / "config.yaml", [])
    if cfg.model.method.name != "dias" or cfg.model.method.reinit.enabled:
        raise SystemExit(f"{run} is not a DIAS run trained without pruning")
    model = load(run / LAST, device="cpu").model.eval()
    _, _, loader = build_loaders(cfg, DistInfo(0, 1, torch.device("cpu")))
    trained = score(model, loader, cfg, BASELINE_NAMES)  # the baselines once: they do not depend on the model
    rows = {"as trained": trained.pop("model")}
    for threshold in thresholds:
        model.reinit = Reinit(
            distance="slots", threshold=threshold, min_clusters=min_clusters, num_iters=1, mask_pruned=True
        )
        setting = f"pruned at inference, threshold {threshold:g}" if threshold > 0 else ONE_MORE_ITERATION
        rows[setting] = score(model, loader, cfg)["model"]
    model.reinit = None
    return rows | {BASELINE_TITLES[name]: scores for name, scores in trained.items()}


def table(results: list[dict[str, dict[str, float]]], argv: str) -> str:
    """Markdown: one row per setting, mean ± sample std over runs (scores x100)."""

    def values(setting: str, key: str) -> list[float]:
        return [run[setting][key] for run in results]

    def percent(setting: str, key: str) -> str:
        scaled = [100 * value for value in values(setting, key)]
        spread = statistics.stdev(scaled) if len(scaled) > 1 else 0.0
        return f"{statistics.mean(scaled):.1f} ± {spread:.1f}"

    lines = [
        f"# Pruning at inference only, {len(results)} run(s) trained without it",
        "",
        f"`python benchmarks/prune_at_inference.py {argv}`; {cpu_name()}, torch {torch.__version__}, "
        f"{datetime.date.today().isoformat()}",
        "",
        "| setting | FG-ARI | mBO | slots with pixels |",
        "|---|---|---|---|",
    ]
    for setting in results[0]:
        active = f"{statistics.mean(values(setting, 'active')):.2f}" if "active" in results[0][setting] else ""
        lines.append(f"| {setting} | {percent(setting, 'fg_ari')} | {percent(setting, 'mbo')} | {active} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="finished dias runs (last.pt, config.yaml)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.1])
    parser.add_argument("--min-clusters", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    results = [measure(run, args.thresholds, args.min_clusters) for run in args.runs]
    text = table(results, " ".join(sys.argv[1:]))
    if args.out is not None:
        atomic_write_bytes(args.out, text.encode("utf-8"))
    print(text)


if __name__ == "__main__":
    main()
