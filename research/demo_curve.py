"""FG-ARI of the CPU demo against training wall time: trains configs/demo.yaml in one-minute slices.

Frozen history (research/): kept as it was when its results were made, so that a finding can be read next
to the code that produced it. Not maintained, not run by the tests, and not guaranteed to run against the
current package; to measure the package, use benchmarks/.

Each slice resumes the previous one from run_dir/last.pt (bit-identical to an uninterrupted run on CPU), and
the whole val split is scored between slices, off the training clock. Prints a table and writes
research/results/NAME.png (drawn with Pillow) and NAME.md.

    python research/demo_curve.py [--minutes 12] [--slice 1] [--name demo_curve] [key=value ...]
    python research/demo_curve.py --seeds 42 43 44   # NAME_seed42.md ... and NAME.md over the seeds

NAME comes from `--name`, so a run with overrides (another seed, say) does not overwrite the default's.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from dias.baselines import BASELINE_NAMES, BASELINE_TITLES
from dias.config import load_config
from dias.demo.run import demo_config_path
from dias.runtime.distributed import DistInfo
from dias.train.loaders import build_loaders
from dias.train.loop import train
from dias.train.validate import baseline_part, validate

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=12.0, help="stop after this much training time")
    parser.add_argument("--slice", type=float, default=1.0, help="minutes of training between evaluations")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo-curve"))
    parser.add_argument("--name", default="demo_curve", help="stem of the files written to research/results/")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="train.seed of each run (NAME_seedS)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.seeds is None:
        rows, baselines, cfg = run_curve(args.overrides, args.run_dir, args.minutes, args.slice)
        write_results(rows, baselines, cfg, args.name, args.overrides)
        return
    finals = {}
    for seed in args.seeds:
        overrides = [*args.overrides, f"train.seed={seed}"]
        rows, baselines, cfg = run_curve(overrides, args.run_dir / f"seed{seed}", args.minutes, args.slice)
        write_results(rows, baselines, cfg, f"{args.name}_seed{seed}", overrides)
        finals[seed] = rows[-1]
    write_summary(finals, baselines, args.name, args.overrides)


def run_curve(overrides: list[str], run_dir: Path, minutes: float, slice_minutes: float):
    """Train the demo in slices from scratch into run_dir; (rows, baselines, cfg)."""
    cfg = load_config(demo_config_path(), ["train.val_every=1000000", "log.tensorboard=false", *overrides])
    for name in ("last.pt", "metrics.jsonl"):
        (run_dir / name).unlink(missing_ok=True)
    _, _, val_loader = build_loaders(cfg, DistInfo(0, 1, torch.device("cpu")))
    rows, baselines, trained, resume, status = [], {}, 0.0, False, "stopped"
    known = None
    while status != "done" and trained < minutes * 60:
        start = time.monotonic()
        result = train(cfg, run_dir, resume=resume, time_limit=slice_minutes * 60, progress=False)
        trained += time.monotonic() - start
        resume, status = True, result.status
        means = validate(
            result.model, val_loader, cfg.eval.mask_source, cfg.eval.seed, torch.device("cpu"), baselines=known
        )
        known = baseline_part(means)  # scored on the first slice only: the baselines do not depend on the weights
        rows.append((trained / 60, result.step, means["fg_ari"], means["mbo"]))
        baselines = {name: (means[f"{name}/fg_ari"], means[f"{name}/mbo"]) for name in BASELINE_NAMES}
        print(
            f"{rows[-1][0]:6.2f} min  step {result.step:5d}  FG-ARI {means['fg_ari']:.3f}  mBO {means['mbo']:.3f}",
            flush=True,
        )
    return rows, baselines, cfg


def write_summary(finals: dict[int, tuple], baselines: dict[str, tuple[float, float]], name: str, overrides) -> None:
    """NAME.md: the last row of each seed's run, their mean and the best baseline."""
    best = [max(v[i] for v in baselines.values()) for i in (0, 1)]
    fg_aris = [row[2] for row in finals.values()]
    mbos = [row[3] for row in finals.values()]
    lines = [
        "# Demo over seeds: the end of each run (2 CPU cores, configs/demo.yaml)",
        "",
        f"overrides: {' '.join(overrides) or 'none'}; decoder masks unless the overrides say otherwise.",
        "",
        "| seed | minutes | step | FG-ARI | mBO |",
        "|---|---|---|---|---|",
        *(f"| {seed} | {m:.2f} | {s} | {f:.3f} | {b:.3f} |" for seed, (m, s, f, b) in finals.items()),
        f"| mean | | | {sum(fg_aris) / len(fg_aris):.3f} | {sum(mbos) / len(mbos):.3f} |",
        f"| best baseline | | | {best[0]:.3f} | {best[1]:.3f} |",
        "",
        *(f"- {BASELINE_TITLES[b]}: FG-ARI {f:.3f}, mBO {m:.3f}" for b, (f, m) in baselines.items()),
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def write_results(
    rows: list[tuple[float, int, float, float]],
    baselines: dict[str, tuple[float, float]],
    cfg,
    name: str,
    overrides: list[str],
) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Demo: FG-ARI vs training time (2 CPU cores, configs/demo.yaml)",
        "",
        f"overrides: {' '.join(overrides) or 'none'}; precision {cfg.train.precision}, "
        f"batch {cfg.data.batch_size}, {cfg.train.total_steps} steps planned; "
        f"val split of the synthetic dataset (1,000 images), masks from {cfg.eval.mask_source}.",
        "",
        "| minutes | step | FG-ARI | mBO |",
        "|---|---|---|---|",
        *(f"| {m:.2f} | {s} | {f:.3f} | {b:.3f} |" for m, s, f, b in rows),
        "",
        "Baselines on the same images, grid and metrics (dias.baselines):",
        "",
        "| baseline | FG-ARI | mBO |",
        "|---|---|---|",
        *(f"| {BASELINE_TITLES[b]} | {f:.3f} | {m:.3f} |" for b, (f, m) in baselines.items()),
    ]
    if rows and baselines:
        best_fg_ari, best_mbo = (max(v[i] for v in baselines.values()) for i in (0, 1))
        lines += ["", f"last row minus the best baseline: FG-ARI {rows[-1][2] - best_fg_ari:+.3f}, "
                  f"mBO {rows[-1][3] - best_mbo:+.3f}"]  # fmt: skip
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    draw_curve(rows, baselines, RESULTS / f"{name}.png")
    print("\n".join(lines))


def draw_curve(rows, baselines, path: Path, size=(640, 400), margin=50) -> None:
    """FG-ARI (blue) and mBO (orange) against minutes, on a 0..1 axis; the best baselines dashed."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    width, height = size[0] - 2 * margin, size[1] - 2 * margin
    max_minutes = max((r[0] for r in rows), default=1.0)

    def point(minutes: float, value: float) -> tuple[float, float]:
        return margin + width * minutes / max_minutes, margin + height * (1 - value)

    draw.rectangle([margin, margin, margin + width, margin + height], outline="black")
    for tick in (0.25, 0.5, 0.75):
        y = margin + height * (1 - tick)
        draw.line([margin, y, margin + width, y], fill=(220, 220, 220))
        draw.text((5, y - 6), f"{tick:.2f}", fill="black")
    draw.text((margin + width - 60, margin + height + 10), f"{max_minutes:.1f} min", fill="black")
    for column, color in ((2, (40, 90, 220)), (3, (240, 130, 30))):
        if baselines:
            y = point(0.0, max(v[column - 2] for v in baselines.values()))[1]
            for x in range(margin, margin + width, 12):
                draw.line([x, y, x + 6, y], fill=color, width=1)
    draw.text((margin + 10, margin + 40), "dashed: best baseline", fill="black")
    for column, color, label in ((2, (40, 90, 220), "FG-ARI"), (3, (240, 130, 30), "mBO")):
        points = [point(0.0, 0.0)] + [point(r[0], r[column]) for r in rows]
        draw.line(points, fill=color, width=3)
        draw.text((margin + 10, margin + 10 + 15 * (column - 2)), label, fill=color)
    image.save(path)


if __name__ == "__main__":
    main()
