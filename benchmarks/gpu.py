"""One command that measures a GPU: training step, the official step, data loading, feature cache, evaluation.

    python benchmarks/gpu.py [--config configs/dias-coco.yaml] [--batch-size 32] [--rounds 3] [--steps 10]

On a machine without CUDA it says so and exits 0 (`--allow-cpu` measures the CPU instead, e.g. to check
the script with `--quick`). Per device it reports the median of interleaved rounds of:
- the training step (dias.train.step.optimisation_step, what `dias train` runs) for the config at batch 32,
  features given and with the frozen backbone, in fp32, bf16 and fp16 autocast, eager and compiled:
  ms/step and peak memory (each variant in a fresh subprocess);
- the official code's step (fp16 autocast + GradScaler, as its train.py) when DIAS_OFFICIAL names a checkout
  of github.com/Genera1Z/DIAS; otherwise a note says it was skipped;
- DataLoader throughput (images/s) of the training transforms from a synthetic LMDB of 256-px JPEGs at
  0, 4 and 8 workers;
- `dias features` build rate and `dias eval` images/s (live backbone and cached tokens).
Writes benchmarks/results/gpu-<device>.md (or --out). The backbone has random weights: the cost is the same.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from features_cache import measure as measure_features
from machine import cpu_name, slug
from timing import median, median_of_rounds, peak_memory_mib, reset_peak_memory, synchronize, time_calls
from torch.utils.data import DataLoader

from dias.config import load_config
from dias.data.dataset import LmdbDataset, collate
from dias.data.records import LmdbWriter
from dias.data.transforms import TrainTransform
from dias.io import atomic_write_bytes
from dias.methods import build_model, method_of
from dias.runtime.device import Precision
from dias.train.step import build_optimizer, optimisation_step

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_ENV = "DIAS_OFFICIAL"  # a checkout of the official code
OFFICIAL_CONFIG = "config-dias/dias_r-coco.py"
PRECISIONS = ("fp32", "bf16", "fp16")
INPUTS = ("features", "backbone")
MODES = ("eager", "compiled")
WORKERS = (0, 4, 8)
JPEG_SIZE = 256


def variant_name(precision: str, inputs: str, mode: str) -> str:
    return f"dias {precision} {inputs} {mode}"


def step_child(args: argparse.Namespace, variant: str) -> dict:
    """Time one training-step variant in this process: ms per step (median) and peak memory."""
    _, precision_name, inputs_kind, mode = variant.split()
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = load_config(args.config, args.override)
    model = build_model(cfg).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg.optim, device)
    precision = Precision(precision_name, device.type)  # as asked: no fallback, this measures the device
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scaled)
    b, size = args.batch_size, cfg.data.image_size
    if inputs_kind == "features":
        grid = model.backbone.grid_size(size)
        inputs = {"features": torch.randn(b, grid[0] * grid[1], model.backbone.feature_dim, device=device)}
    else:
        inputs = {"images": torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, device=device)}
    runner = torch.compile(model) if mode == "compiled" else model

    method = method_of(cfg)
    plan = method.final_plan(cfg)  # the loss weights at the end of training (DIAS: distillation weight 1)

    def step():
        optimisation_step(
            runner, inputs, method=method, plan=plan, cfg=cfg, optimizer=optimizer, scaler=scaler, params=params,
            precision=precision,
        )  # fmt: skip

    reset_peak_memory(device)
    times = time_calls(step, steps=args.steps, warmup=3, device=device)
    return {"ms": 1000 * median(times), "peak_mib": peak_memory_mib(device)}


def official_child(args: argparse.Namespace, variant: str) -> dict:
    """The official code's step, as its train.py runs it: fp16 autocast, GradScaler, clip 1, Adam."""
    checkout = Path(os.environ[OFFICIAL_ENV])
    sys.path.insert(0, str(checkout))
    from object_centric_bench.learn import MetricWrap
    from object_centric_bench.model import ModelWrap
    from object_centric_bench.util import Config, build_from_config

    device = torch.device(args.device)
    cfg = Config.fromfile(checkout / OFFICIAL_CONFIG)
    cfg.model.encode_backbone.modules[1].pretrained = False  # no download; random weights cost the same
    torch.manual_seed(0)
    model = ModelWrap(build_from_config(cfg.model), cfg.model_imap, cfg.model_omap)
    model.freez(cfg.freez)
    model = model.to(device).train()
    b = args.batch_size
    if variant.endswith("features"):  # the fixture's feeder: the backbone's (B, C, h, w) output, given
        features = torch.randn(b, 384, 16, 16, device=device)
        model.m.encode_backbone = _Feeder(features)
    cfg.optimiz.params = model.parameters()
    optimizer = build_from_config(cfg.optimiz)
    scaler = torch.amp.GradScaler(device.type)
    loss_fn = MetricWrap(**build_from_config(cfg.loss_fn_t))
    params = [p for p in model.parameters() if p.requires_grad]
    pack = Config({})
    pack.batch = Config({"image": torch.randn(b, 3, 256, 256, device=device)})  # normalised images

    def step():
        with torch.autocast(device.type, dtype=torch.float16):
            pack.output = model(**pack)
            loss = loss_fn(**pack)
            total = sum(value[valid].mean() for value, valid in loss.values())
        optimizer.zero_grad()
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
        scaler.step(optimizer)
        scaler.update()

    reset_peak_memory(device)
    times = time_calls(step, steps=args.steps, warmup=3, device=device)
    return {"ms": 1000 * median(times), "peak_mib": peak_memory_mib(device)}


class _Feeder(torch.nn.Module):
    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.features = features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features


def run_child(args: argparse.Namespace, variant: str) -> dict:
    """A variant in a fresh subprocess (its own peak memory and compile caches); raises on failure."""
    argv = [sys.executable, __file__, "--child", variant, "--config", args.config, "--device", args.device]
    argv += ["--batch-size", str(args.batch_size), "--steps", str(args.steps), "--allow-cpu"]
    argv += [item for override in args.override for item in ("--override", override)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(lines[-1])
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_jpeg_split(path: Path, num_images: int) -> None:
    """A synthetic LMDB split of `num_images` JPEGs of JPEG_SIZE px: smooth noise and a few rectangles."""
    rng = np.random.default_rng(0)
    with LmdbWriter(path, dataset="synthetic", split="train", image_format="jpeg") as writer:
        for _ in range(writer.num_written, num_images):
            coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            image = np.kron(coarse, np.ones((JPEG_SIZE // 8, JPEG_SIZE // 8, 1), np.uint8))
            mask = np.zeros((JPEG_SIZE, JPEG_SIZE), np.uint16)
            for object_id in range(1, 4):
                y, x = rng.integers(0, JPEG_SIZE - 64, 2)
                mask[y : y + 64, x : x + 64] = object_id
                image[y : y + 64, x : x + 64] = rng.integers(0, 256, 3, dtype=np.uint8)
            writer.add(image, mask, {})


def loader_rate(path: Path, *, num_workers: int, batch_size: int, image_size: int, pin: bool) -> float:
    """Images per second of one pass over the split with the training transforms (after the first batch)."""
    dataset = LmdbDataset(path, TrainTransform(image_size, (0.75, 1.0), True))
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, collate_fn=collate, pin_memory=pin,
        drop_last=True, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    batches = iter(loader)
    next(batches)  # worker start-up is not throughput
    start, count = time.perf_counter(), 0
    for batch in batches:
        count += len(batch["image"])
    return count / (time.perf_counter() - start)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "dias-coco.yaml"))
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N (or cpu with --allow-cpu)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians kept")
    parser.add_argument("--images", type=int, default=512, help="images of the synthetic JPEG split")
    parser.add_argument("--cache-images", type=int, default=256, help="images per split for features and eval")
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKERS))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--allow-cpu", action="store_true", help="measure the CPU when there is no GPU")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/gpu-<device>.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure = official_child if args.child.startswith("official") else step_child
        print(json.dumps(measure(args, args.child)))
        return 0
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        if not args.allow_cpu:
            print("no GPU present (torch.cuda.is_available() is False): nothing measured, nothing written")
            return 0
        args.device = "cpu"
    logging.disable(logging.WARNING)
    device = torch.device(args.device)
    label = device_label(device)
    cfg = load_config(args.config, args.override)
    lines = [
        f"# GPU benchmark: {label}",
        "",
        f"`python benchmarks/gpu.py` on {label}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"{Path(args.config).name}, batch {args.batch_size}; median of {args.rounds} interleaved rounds "
        f"x {args.steps} timed steps.",
        "",
        "## Training step (forward, both losses, backward, clip, Adam)",
        "",
        "| variant | ms / step | peak memory (MiB) |",
        "|---|---|---|",
    ]
    names = [variant_name(p, i, m) for p in args.precisions for i in INPUTS for m in args.modes]
    official = os.environ.get(OFFICIAL_ENV)
    if official:
        names += ["official fp16 features", "official fp16 backbone"]
    results, errors = median_of_rounds(names, lambda name: run_child(args, name), args.rounds)
    for name in names:
        if name in errors:
            lines.append(f"| {name} | failed: {errors[name]} | |")
            continue
        peak = max((r["peak_mib"] or 0) for r in results[name]) or None
        lines.append(f"| {name} | {median([r['ms'] for r in results[name]]):.1f} | {peak and f'{peak:.0f}' or '-'} |")
    if not official:
        lines += ["", f"The official step was skipped: set {OFFICIAL_ENV} to a checkout of the official code."]

    lines += ["", "## DataLoader, training transforms, 256-px JPEGs", "", "| workers | images/s |", "|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.lmdb"
        write_jpeg_split(path, args.images)
        names = [str(w) for w in args.workers]
        rates, errors = median_of_rounds(
            names,
            lambda w: {"rate": loader_rate(path, num_workers=int(w), batch_size=args.batch_size,
                                           image_size=cfg.data.image_size, pin=device.type == "cuda")},
            args.rounds,
        )  # fmt: skip
        for name in names:
            cell = errors.get(name) or f"{median([r['rate'] for r in rates[name]]):.0f}"
            lines.append(f"| {name} | {cell} |")

    lines += ["", "## Feature cache and evaluation", "", "| measurement | images/s |", "|---|---|"]
    synchronize(device)
    rates, errors = median_of_rounds(
        ["cache"],
        lambda _: measure_features(
            args.config, num_images=args.cache_images, views=1, batch_size=args.batch_size, device=args.device,
            overrides=tuple(args.override),
        ),
        args.rounds,
    )  # fmt: skip
    if errors:
        lines.append(f"| all | failed: {errors['cache']} |")
    else:
        for key, title in (("build", "`dias features` build (2 views per training image)"),
                           ("live backbone", "`dias eval`, live backbone"),
                           ("cached tokens", "`dias eval`, cached tokens")):  # fmt: skip
            lines.append(f"| {title} | {median([r[key] for r in rates['cache']]):.1f} |")
    text = "\n".join(lines) + "\n"
    out = args.out or REPO / "benchmarks" / "results" / f"gpu-{slug(label)}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, text.encode("utf-8"))  # a killed run leaves the previous table
    print(text, end="")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
