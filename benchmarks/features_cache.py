"""Feature-cache build throughput and evaluation throughput, live backbone against cached tokens.

    python benchmarks/features_cache.py [--config configs/dias-coco.yaml] [--num-images 64] [--views 1]

Generates a small synthetic dataset at the config's resolution in a temporary folder, builds the cache
(`dias features`) and evaluates the randomly initialised model on the val split twice: running the
frozen backbone, and reading the cache. Prints images per second for each.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_name
from timing import synchronize
from torch.utils.data import DataLoader

from dias.commands.features import build_feature_cache
from dias.config import load_config
from dias.data.dataset import LmdbDataset, collate
from dias.data.records import split_path
from dias.data.synthetic import prepare_synthetic
from dias.data.transforms import EvalTransform
from dias.methods import build_model
from dias.train.features import open_feature_split
from dias.train.validate import evaluate

REPO = Path(__file__).resolve().parents[1]


def measure(
    config: str, *, num_images: int, views: int, batch_size: int, device: str = "cpu", overrides: tuple[str, ...] = ()
) -> dict[str, float]:
    """Images per second: the cache build ("build", every view encoded) and evaluation ("live backbone",
    "cached tokens"), on a synthetic dataset of `num_images` per split at the config's resolution."""
    logging.disable(logging.WARNING)  # the random-backbone warning
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "data", Path(tmp) / "cache"
        overrides = [f"data.root={root}", f"data.features={cache}", f"eval.batch_size={batch_size}", *overrides]
        cfg = load_config(config, [*overrides, "data.num_workers=0"])
        n = num_images
        prepare_synthetic(root, num_train=n, num_val=n, size=cfg.data.image_size, num_workers=2, progress=False)
        synchronize(device)
        start = time.perf_counter()
        build_feature_cache(cfg, cache, num_train_views=views, batch_size=batch_size, device=device, progress=False)
        synchronize(device)
        rates = {"build": (n * (1 + views) + n) / (time.perf_counter() - start)}  # train: 1 + views; val: 1

        torch.manual_seed(0)
        model = build_model(cfg)
        source = LmdbDataset(split_path(root, "val"), EvalTransform(cfg.data.image_size))
        cached = open_feature_split(cfg, "val", train=False, source=source)
        for name, dataset in (("live backbone", source), ("cached tokens", cached)):
            loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
            synchronize(device)
            start = time.perf_counter()
            evaluate(model, loader, device=device, progress=False)
            synchronize(device)
            rates[name] = n / (time.perf_counter() - start)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "dias-coco.yaml"))
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--views", type=int, default=1, help="training views cached per training image")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()
    rates = measure(
        args.config, num_images=args.num_images, views=args.views, batch_size=args.batch_size,
        overrides=tuple(args.override),
    )  # fmt: skip
    n = args.num_images
    print(
        f"# {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {Path(args.config).name}, {n} images per split, batch {args.batch_size}"
    )
    print("| measurement | images/s |")
    print("|---|---|")
    print(f"| cache build (backbone + fp16 write, {1 + args.views} views per training image) | {rates['build']:.1f} |")
    for name in ("live backbone", "cached tokens"):
        print(f"| evaluation, {name} | {rates[name]:.1f} |")


if __name__ == "__main__":
    main()
