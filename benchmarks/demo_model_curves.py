"""The demo model's reference runs against their baselines: validation FG-ARI and mBO, step by step, per seed.

Reads the training logs (what `dias train` logs at every validation: the model's scores on the whole val
split and the three baselines' on the same images) and writes a table of every seed, their mean and the
margin over the best baseline, which is what the demo model's target is stated in (+0.05 on both). By
default the logs are a bundled model's (src/dias/demo_model/log-seed*.jsonl, the three runs' metrics.jsonl
as packaged; --model dinov2: src/dias/demo_model_dinov2/); `--runs PREFIX` reads run folders PREFIX-SEED
instead, e.g. runs that scripts/train_demo_model.sh is training.

    python benchmarks/demo_model_curves.py                           # results/demo_model_v2_curves.md
    python benchmarks/demo_model_curves.py --model dinov2 --every 1000   # results/demo_model_dinov2_curves.md
    python benchmarks/demo_model_curves.py --runs runs/demo-model --out runs/curves.md

A step is in the mean only when every seed has logged it; a run still training simply has fewer rows.
A step logged twice (a run resumed from a checkpoint older than its log) counts once, the later record.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dias.baselines import BASELINE_NAMES
from dias.demo.reference import COLOUR, REFERENCE_PACKAGE_DIRS, bundled_reference_dir, load_reference
from dias.io import atomic_write_bytes
from dias.train.log import METRICS_FILE_NAME, read_metrics

RESULTS = Path(__file__).resolve().parent / "results"
RESULT_NAMES = {COLOUR: "demo_model_v2_curves.md"}  # other models: demo_model_MODEL_curves.md
METRICS = ("fg_ari", "mbo")
TITLES = {"fg_ari": "FG-ARI", "mbo": "mBO"}
BASELINE_SHORT = {"grid": "grid", "voronoi": "Voronoi", "kmeans": "k-means"}
MARGIN = 0.05  # the target: the seeds' mean this far above the best baseline, on each metric


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(REFERENCE_PACKAGE_DIRS), default=COLOUR, help="the bundled model")
    parser.add_argument("--reference", type=Path, default=None, help="a reference folder instead of --model's")
    parser.add_argument("--runs", default=None, help="read run folders PREFIX-SEED instead of a reference")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44], help="with --runs: the seeds")
    parser.add_argument("--every", type=int, default=2500, help="steps between the rows (the last one is added)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or RESULTS / RESULT_NAMES.get(args.model, f"demo_model_{args.model}_curves.md")
    if args.runs:
        runs = {seed: validations(run_records(Path(f"{args.runs}-{seed}"))) for seed in args.seeds}
        title = f"Training runs {args.runs}-SEED"
    else:
        reference = load_reference(args.reference or bundled_reference_dir(args.model))
        runs = {seed: validations(records) for seed, records in reference.logs.items()}
        logs = f"the bundled {args.model} model's logs" if args.reference is None else f"the logs in {args.reference}"
        title = f"The demo model's runs ({logs})"
    text = table(runs, args.every, title)
    atomic_write_bytes(out, text.encode("utf-8"))
    print(text, end="")


def run_records(run_dir: Path) -> list[dict[str, Any]]:
    if not (run_dir / METRICS_FILE_NAME).is_file():
        raise SystemExit(f"no training log in {run_dir}: train the run first (scripts/train_demo_model.sh)")
    return read_metrics(run_dir)


def validations(records: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """step -> that validation's record (the later one where a step was logged twice)."""
    return {int(r["step"]): r for r in records if "val/fg_ari" in r}


def best_baseline(records: list[dict[str, float]], metric: str) -> tuple[str, float]:
    """The baseline with the highest score on `metric`, as its mean over the runs' records of one step."""
    scores = {name: sum(r[f"val/{name}/{metric}"] for r in records) / len(records) for name in BASELINE_NAMES}
    name = max(scores, key=scores.get)
    return name, scores[name]


def table(runs: dict[int, dict[int, dict[str, float]]], every: int, title: str) -> str:
    seeds = sorted(runs)
    common = sorted(set.intersection(*(set(records) for records in runs.values())))
    last = {seed: max(records, default=0) for seed, records in runs.items()}
    steps = sorted(set(range(every, max(last.values(), default=0) + 1, every)) | set(last.values()) - {0})
    header = ["step", *(f"{TITLES[m]} seed {s}" for m in METRICS for s in seeds)]
    header += [f"{TITLES[m]} mean − best baseline" for m in METRICS]
    command = " ".join(["python benchmarks/demo_model_curves.py", *sys.argv[1:]])
    lines = [
        f"# {title} against their baselines, val split",
        "",
        f"`{command}`; the target is the seeds' mean at least {MARGIN} above the best "
        "baseline on both metrics (**bold**: met). Baselines scored on the same val images at each validation.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---:|" * len(header),
    ]
    for step in steps:
        cells = [f"{step:,}"]
        for metric in METRICS:
            cells += [f"{runs[s][step][f'val/{metric}']:.3f}" if step in runs[s] else "" for s in seeds]
        for metric in METRICS:
            if step not in common:
                cells.append("")
                continue
            mean = sum(runs[s][step][f"val/{metric}"] for s in seeds) / len(seeds)
            name, baseline = best_baseline([runs[s][step] for s in seeds], metric)
            margin = f"{mean - baseline:+.3f} ({mean:.3f} − {BASELINE_SHORT[name]} {baseline:.3f})"
            cells.append(f"**{margin}**" if mean - baseline >= MARGIN else margin)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Last step logged: " + ", ".join(f"seed {s} {last[s]:,}" for s in seeds) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
