"""Does a whole bf16 training follow fp32's? A bf16 run of the DINOv2 demo config against its fp32 reference runs.

    dias train --config configs/demo-dinov2.yaml --out runs/bf16-demo-dinov2-42 train.seed=42 \
        train.precision=bf16 data.root=data/synthetic-256 data.features=cache/synthetic-256-dinov2
    python benchmarks/precision_auto.py runs/bf16-demo-dinov2-42 [--out results/precision_auto.md]

The evidence for `train.precision=auto` (dias.runtime.device): on a CPU with bf16 matrix instructions it
trains in bf16, which is only right if bf16 training ends where fp32 training does. The bundled DINOv2 demo
model ships its three fp32 runs' logs (seeds 42, 43, 44; 6,000 steps). This harness reads a bf16 run of the
same config and compares it with them the way `dias demo` compares a fresh run (dias.demo.follow: loss
blocks and val FG-ARI / mBO, each within the reference seeds' spread), but over the whole run, not its first
minutes. The yardstick is what an fp32 run of another seed scores under the same test: for each pair of fp32
seeds taken as the reference, the third fp32 seed and the bf16 run are checked against that pair. The table
gives, per reference pair, the share of points inside the band and the verdict for each; then the last
validation scores of every run (the whole val split, decoder masks) beside k-means on the same tokens and
the image-blind grid.

`--reference RUN [RUN ...]` takes the fp32 runs from run folders instead (any config; at least three, so
that each pair leaves one out):

    python benchmarks/precision_auto.py runs/bf16-42 --reference runs/fp32-42 runs/fp32-43 runs/fp32-44 \
        --title "my config" --out my_check.md

benchmarks/precision_video.py trains such runs for the video methods and writes their report with `report`.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import shlex
import sys
from pathlib import Path

from dias.demo.follow import LOSS_KEY, VAL_KEYS, FollowCheck, compare_to_reference
from dias.demo.reference import DINOV2, bundled_reference_dir, load_reference
from dias.io import atomic_write_bytes
from dias.train.log import read_metrics

RESULTS = Path(__file__).resolve().parent / "results"


def share_inside(check: FollowCheck) -> str:
    """ "inside / compared" over every point, then per quantity."""
    parts = []
    for key in (LOSS_KEY, *VAL_KEYS):
        points = [p for p in check.points if p.key == key]
        parts.append(f"{sum(p.inside for p in points)}/{len(points)}")
    return " · ".join(parts)


def verdict(check: FollowCheck) -> str:
    if check.follows:
        return "follows"
    if check.failure is None:
        return str(check.verdict)
    return f"does not: {check.failure.describe()}"


def label(run: int | str) -> str:
    """A reference run's name in the tables: "seed 42" for the bundled logs (keyed by seed), else its folder's."""
    return f"seed {run}" if isinstance(run, int) else str(run)


def last_val(records: list[dict]) -> dict[str, float]:
    """The last validation's scores of a run's log."""
    return next(r for r in reversed(records) if "val/fg_ari" in r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the bf16 run's folder (its metrics.jsonl)")
    parser.add_argument("--model", default=DINOV2, help="the bundled demo model whose fp32 logs are the reference")
    parser.add_argument(
        "--reference", type=Path, nargs="+", default=None, metavar="RUN",
        help="fp32 run folders (three or more) as the reference, instead of the bundled demo model's logs",
    )  # fmt: skip
    parser.add_argument("--title", default=None, help="what was trained (default: the bundled demo config)")
    parser.add_argument("--out", type=Path, default=RESULTS / "precision_auto.md")
    args = parser.parse_args()
    if args.reference is None:
        logs = load_reference(bundled_reference_dir(args.model)).logs
        source = f"the bundled model's reference logs (seeds {', '.join(map(str, logs))})"
        title = args.title or f"the {args.model} demo config"
    else:
        if len(args.reference) < 3:
            parser.error("--reference needs three fp32 runs or more: each pair of them leaves one out")
        logs = {run.name: read_metrics(run) for run in args.reference}
        source = "the runs " + ", ".join(f"`{name}`" for name in logs)
        title = args.title or "the runs' config"
    command = shlex.join(["python", "benchmarks/precision_auto.py", *sys.argv[1:]])
    text = report(read_metrics(args.run), args.run.name, logs, title=title, source=source, command=command)
    print(text)
    atomic_write_bytes(args.out, text.encode("utf-8"))


def report(records: list[dict], name: str, logs: dict, *, title: str, source: str, command: str) -> str:
    """The Markdown report: the bf16 run `records` (from folder `name`) against the fp32 `logs` (name -> log)."""
    steps = max(r["step"] for r in records)
    total = max(r["step"] for r in next(iter(logs.values())))
    lines = [
        f"# bf16 training against fp32: {title}, {steps:,} of {total:,} steps",
        "",
        f"`{command}`, {datetime.date.today().isoformat()}. The fp32 runs are {source}.",
        "",
        "## Does it follow? Each pair of fp32 runs as the reference, the other fp32 runs beside the bf16 run",
        "",
        "Points inside the reference band: loss blocks · val FG-ARI · val mBO (dias.demo.follow's rule, over "
        "the whole run).",
        "",
        "| reference runs | run | points inside | verdict |",
        "|---|---|---|---|",
    ]
    for pair in itertools.combinations(sorted(logs), 2):
        pair_logs = {seed: logs[seed] for seed in pair}
        others = [(f"fp32 {label(other)}", logs[other]) for other in sorted(set(logs) - set(pair))]
        for run_name, run in [*others, ("bf16", records)]:
            check = compare_to_reference(run, pair_logs)
            lines.append(
                f"| {label(pair[0])}, {label(pair[1])} | {run_name} | {share_inside(check)} | {verdict(check)} |"
            )
    against_all = compare_to_reference(records, logs)
    lines += [
        "",
        f"All {len(logs)} fp32 runs as the reference (as `dias demo` checks): {share_inside(against_all)}, "
        f"{verdict(against_all)}.",
        "",
        "## Last validation (val split, decoder masks)",
        "",
        "| run | step | FG-ARI | mBO | k-means FG-ARI | k-means mBO | grid FG-ARI | grid mBO |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs = {f"fp32 {label(seed)}": log for seed, log in logs.items()} | {f"bf16 ({name})": records}
    for run_name, log in runs.items():
        val = last_val(log)
        cells = [val[f"val/{prefix}{metric}"] for prefix in ("", "kmeans/", "grid/") for metric in ("fg_ari", "mbo")]
        lines.append(f"| {run_name} | {val['step']:,} | " + " | ".join(f"{100 * v:.1f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
