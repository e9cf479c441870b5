"""Evaluation speed: images per second of `evaluate` (batches, forward, masks, metrics, baselines), by part.

    python benchmarks/eval_speed.py --model dinov2 --data data/synthetic-256 --features cache/synthetic-256-dinov2
    python benchmarks/eval_speed.py [--model colour] [--data data/synthetic] [--images 256] [--rounds 2]

Scores the bundled demo model (dias.demo.reference) on the first --images val images with dias's own
evaluation (dias.train.validate.evaluate, as `dias eval` and validation in training run it), in fp32 and,
on a CPU with bf16 matrix instructions, in bf16 autocast; with the baselines (as `dias eval` scores them)
and without (as validation in training scores them after its first pass). For a ViT model it runs twice
over: on the cached tokens of --features, and with the live backbone on the images. Each row's time is
split by part: loading and collating batches, moving them to the device, the model's forward, mask
upsampling and argmax, the metrics, the baselines' partitions (k-means on the tokens). Batches load in the
main process (data.num_workers=0), so their cost shows. After one untimed batch per input, rows are
interleaved over --rounds and the median is kept. The scores of each precision are printed beside it:
bf16 must not change them beyond noise to be worth its speed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from machine import cpu_name
from timing import median_of_rounds

import dias.train.validate as validate_module
from dias.baselines import BASELINE_NAMES
from dias.commands.evaluate import _split_loader
from dias.config import apply_overrides, from_dict, to_dict
from dias.demo.reference import COLOUR, REFERENCE_PACKAGE_DIRS, bundled_reference_dir
from dias.io import atomic_write_bytes
from dias.runtime.device import cpu_has_fast_bf16
from dias.train.checkpoint import load_model

RESULTS = Path(__file__).resolve().parent / "results"
CPU = torch.device("cpu")
# the functions of dias.train.validate timed as parts, in the order of the table's columns
PARTS = {
    "batch_inputs": "to device",
    "forward": "forward",
    "masks_from_attention": "masks",
    "score": "metrics",
    "baseline_masks": "baseline partitions",
}
SCORED = {True: "model + baselines", False: "model only"}
LOADING = "loading"  # the whole evaluation less the parts: the loader's batches, collation, the loop


@contextlib.contextmanager
def timed_parts(model: torch.nn.Module, seconds: dict[str, float]) -> Iterator[None]:
    """Add each part's wall time to seconds[part] while inside (validate's functions and the model's forward)."""

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - start

        return wrapper

    saved = {name: getattr(validate_module, name) for name in PARTS if name != "forward"}
    for name, fn in saved.items():
        setattr(validate_module, name, timed(name, fn))
    model.forward = timed("forward", model.forward)  # the instance's attribute: nn.Module.__call__ finds it first
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(validate_module, name, fn)
        del model.forward


def measure(model, loader, *, precision: str, baselines: bool, num_batches: int, seed: int) -> dict:
    """One evaluation of the first num_batches batches: images/s, ms per image by part, the mean scores."""
    seconds: dict[str, float] = defaultdict(float)
    with timed_parts(model, seconds):
        start = time.perf_counter()
        result = validate_module.evaluate(
            model, loader, seed=seed, device=CPU, progress=False, max_batches=num_batches, precision=precision,
            baselines=BASELINE_NAMES if baselines else (),
        )  # fmt: skip
        total = time.perf_counter() - start
    images = result.num_images
    ms = {PARTS[name]: 1000 * seconds[name] / images for name in PARTS}
    ms[LOADING] = 1000 * (total - sum(seconds.values())) / images
    return {"images/s": images / total, "ms": ms, "images": images, "scores": result.means()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(REFERENCE_PACKAGE_DIRS), default=COLOUR, help="bundled model")
    parser.add_argument("--data", default="data/synthetic", help="its synthetic dataset (`dias prepare synthetic`)")
    parser.add_argument("--features", default=None, help="its cached tokens of --data (`dias features`)")
    parser.add_argument("--images", type=int, default=256, help="val images scored per row (whole batches)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=None, help="default: fp32, and bf16 where native")
    parser.add_argument("--out", type=Path, default=None, help="default: results/eval_speed_MODEL.md")
    args = parser.parse_args()
    precisions = args.precisions or (["fp32", "bf16"] if cpu_has_fast_bf16() else ["fp32"])
    weights = bundled_reference_dir(args.model) / "model.safetensors"
    placement = [f"data.root={args.data}", f"eval.batch_size={args.batch_size}", "data.num_workers=0"]
    model, cfg = load_model(weights, overrides=placement)  # one model: given tokens, it skips its backbone
    sources = {"cached tokens": [f"data.features={args.features}"]} if args.features else {}
    sources["images, live backbone"] = ["data.features=null"]  # the bundled config names the cache it trained on
    loaders = {
        source: _split_loader(from_dict(apply_overrides(to_dict(cfg), extra)), cfg.data.val_split, CPU)
        for source, extra in sources.items()
    }
    num_batches = -(-args.images // args.batch_size)
    rows = {
        " | ".join([source, precision, SCORED[baselines]]): (source, precision, baselines)
        for source in sources
        for precision in precisions
        for baselines in (True, False)
    }  # name: what it runs; the name is the table row's first three cells

    def run(name: str) -> dict:
        source, precision, baselines = rows[name]
        return measure(
            model, loaders[source], precision=precision, baselines=baselines, num_batches=num_batches,
            seed=cfg.eval.seed,
        )  # fmt: skip

    for loader in loaders.values():  # untimed: the first call's one-off costs (allocation, kernel choice)
        measure(model, loader, precision=precisions[0], baselines=True, num_batches=1, seed=cfg.eval.seed)
    load = os.getloadavg()[0]
    results, errors = median_of_rounds(list(rows), run, args.rounds)
    columns = [*PARTS.values(), LOADING]
    header = ["inputs", "precision", "scored", "images/s", *(f"{c} (ms/img)" for c in columns), "FG-ARI", "mBO"]
    images = next((runs[0]["images"] for runs in results.values() if runs), 0)
    lines = [
        f"# Evaluation speed of the bundled {args.model} demo model (CPU)",
        "",
        f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{datetime.date.today().isoformat()}; {images} val images of {args.data} per row, batch {args.batch_size}, "
        f"median of {args.rounds} interleaved rounds; load average {load:.1f} when it started.",
        "",
        f"    python benchmarks/eval_speed.py {' '.join(sys.argv[1:])}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, runs in results.items():
        if name in errors:
            lines.append(f"| {name} | {errors[name]} |")
            continue
        rate = statistics.median(r["images/s"] for r in runs)
        parts = " | ".join(f"{statistics.median(r['ms'][c] for r in runs):.1f}" for c in columns)
        scores = runs[0]["scores"]
        lines.append(f"| {name} | {rate:.1f} | {parts} | {100 * scores['fg_ari']:.1f} | {100 * scores['mbo']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or RESULTS / f"eval_speed_{args.model}.md"
    atomic_write_bytes(out, text.encode("utf-8"))


if __name__ == "__main__":
    main()
