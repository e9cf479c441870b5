"""Both video methods on the built-in synthetic video: 3 seeds, one step budget, beside the video baselines.

    python benchmarks/video_synthetic.py [--steps 200] [--seeds 42 43 44] [--data data/synthetic-video-bench]
        [--num-train 64] [--num-val 16] [--frames 6] [--size 64] [--out results/video_synthetic.md]

Methods, unconditional (a shared Gaussian starts frame 0's slots, as on YTVIS; no boxes are read):
- SmoothSA-video: configs/smoothsa-video-ytvis-hq.yaml's method (preheater, bi-level truncation,
  recon + SlotContrast + preheat);
- RandSF.Q: configs/randsfq-ytvis.yaml's method (recon + SlotContrast, gradients through all iterations).
Both with data.name=synthetic_video, K = 6 (the generator's fixed object count), the parameter-free
colour_codes backbone of configs/demo.yaml in place of DINOv2 (which cannot be downloaded offline; patch 8),
whole validation videos, fp32 on the CPU and the schedule compressed to --steps. Each run is scored on the
whole val split by its final validation (dias.train.validate: the official space-time convention, which
counts identity switches, VideoSAUR's and the per-frame image metrics); the baselines (grid and Voronoi
constant over time, k-means per frame) are scored on the same clips, K and tokens.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name

from dias.baselines import BASELINE_NAMES, BASELINE_TITLES
from dias.config import load_config
from dias.data.synthetic_video import prepare_synthetic_video
from dias.io import atomic_write_bytes
from dias.train.loop import train

REPO = Path(__file__).resolve().parents[1]
NUM_OBJECTS = 6  # synthetic_video pads every clip to 6 objects: K = 6
METHODS = {
    "SmoothSA-video": REPO / "configs" / "smoothsa-video-ytvis-hq.yaml",
    "RandSF.Q": REPO / "configs" / "randsfq-ytvis.yaml",
}
# (score key, column title): the official space-time convention first, then VideoSAUR's, then per frame
COLUMNS = [
    ("ari", "ARI"),
    ("fg_ari", "FG-ARI"),
    ("mbo", "mBO"),
    ("miou", "mIoU"),
    ("videosaur/fg_ari", "VideoSAUR FG-ARI"),
    ("videosaur/mbo", "VideoSAUR mBO"),
    ("frame/fg_ari", "per-frame FG-ARI"),
    ("frame/mbo", "per-frame mBO"),
]


def common_overrides(args: argparse.Namespace) -> list[str]:
    """What every run shares: the data, the stand-in backbone, the model's size and the compressed schedule."""
    return [
        "data.name=synthetic_video",
        f"data.root={args.data}",
        f"data.image_size={args.size}",
        f"data.clip_length={args.clip_length}",
        "data.eval_clip_length=null",  # whole validation videos
        f"data.batch_size={args.batch_size}",
        "data.num_workers=0",
        f"model.num_slots={NUM_OBJECTS}",
        "model.backbone.name=colour_codes",
        "model.backbone.patch_size=8",
        f"model.slot_dim={args.slot_dim}",
        f"model.slot_attention.mlp_dim={2 * args.slot_dim}",
        "model.decoder.num_layers=1",
        f"eval.batch_size={args.batch_size}",
        f"train.total_steps={args.steps}",
        f"optim.warmup_steps={max(1, args.steps // 20)}",
        f"train.val_every={args.steps}",
        f"train.checkpoint_every={args.steps}",
        "train.device=cpu",
        "eval.device=cpu",
        "train.precision=fp32",
        "log.tensorboard=false",
        *args.override,
    ]


def run(config: Path, overrides: list[str], run_dir: Path) -> dict[str, float]:
    """Train one method and seed; its scores and the baselines' ("kmeans/fg_ari", ...) from the final validation."""
    result = train(load_config(config, overrides), run_dir, progress=False)
    return dict(result.val)


def table(args: argparse.Namespace, command: str) -> str:
    """Train every method x seed and return the Markdown report."""
    overrides = common_overrides(args)
    lines = []
    rows_by_method = {}
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in METHODS.items():
            start = time.perf_counter()
            rows_by_method[name] = [
                run(config, [*overrides, f"train.seed={seed}"], Path(tmp) / f"{name}-{seed}") for seed in args.seeds
            ]
            seconds[name] = (time.perf_counter() - start) / len(args.seeds)
    baseline_rows = rows_by_method[next(iter(METHODS))]  # the same clips, K and tokens for every method
    lines += [
        "# Video methods on synthetic-video, beside the baselines",
        "",
        f"CPU: {cpu_name()}. Date: {datetime.date.today().isoformat()}. Command: `{command}`.",
        "",
        f"Data: `dias prepare synthetic-video`, {args.num_train} training and {args.num_val} validation videos of "
        f"{args.frames} frames at {args.size} px (generator seed {args.data_seed}). Training: {args.steps} steps "
        f"per run, batch {args.batch_size} clips of {args.clip_length} frames, seeds {' '.join(map(str, args.seeds))}, "
        f"K = {NUM_OBJECTS}, slot width {args.slot_dim}, one decoder layer, fp32, the parameter-free colour_codes "
        "backbone (patch 8) in place of DINOv2. Scored on the whole val split (whole videos, decoder masks); "
        "×100, mean ± sample std over seeds. The baselines do not depend on the seed or the method.",
        "",
        "ARI, FG-ARI, mBO and mIoU are the official space-time convention: one segmentation of the whole clip, so a "
        "slot that swaps objects between frames lowers them. VideoSAUR's FG-ARI and mBO are space-time too; "
        "the per-frame scores ignore identity across frames.",
        "",
        "| method | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, rows in rows_by_method.items():
        lines.append(f"| {name} | " + " | ".join(_cell(rows, key) for key, _ in COLUMNS) + " |")
    for baseline in BASELINE_NAMES:
        title = BASELINE_TITLES[baseline] + (", per frame" if baseline == "kmeans" else ", constant over time")
        cells = " | ".join(_cell(baseline_rows, f"{baseline}/{key}", spread=False) for key, _ in COLUMNS)
        lines.append(f"| {title} | {cells} |")
    lines += ["", "Wall time per run (training and validation): "]
    lines[-1] += ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items()) + "."
    return "\n".join(lines) + "\n"


def _cell(rows: list[dict[str, float]], key: str, spread: bool = True) -> str:
    """Mean ± sample std over seeds, x100 (the mean alone where the value cannot vary with the seed)."""
    values = [100 * row[key] for row in rows]
    if not spread:
        return f"{statistics.mean(values):.1f}"
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {deviation:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--data", default="data/synthetic-video-bench", help="made here unless it exists")
    parser.add_argument("--num-train", type=int, default=64)
    parser.add_argument("--num-val", type=int, default=16)
    parser.add_argument("--frames", type=int, default=6, help="frames per generated video")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--clip-length", type=int, default=4, help="training clip length (frames)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per training and evaluation batch")
    parser.add_argument("--slot-dim", type=int, default=64)
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="for every run")
    parser.add_argument("--out", default=None, help="also write the report here (Markdown)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    prepare_synthetic_video(
        args.data, num_train=args.num_train, num_val=args.num_val, num_frames=args.frames, size=args.size,
        seed=args.data_seed, progress=False,
    )  # fmt: skip  # keeps a finished dataset made with the same settings
    command = shlex.join(["python", "benchmarks/video_synthetic.py", *sys.argv[1:]])
    report = table(args, command)
    print(report, end="")
    if args.out:
        atomic_write_bytes(args.out, report.encode("utf-8"))  # a killed run leaves the previous table


if __name__ == "__main__":
    main()
