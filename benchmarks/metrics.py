"""Metric throughput: scoring N predictions of 256x256 with K slots against generated ground truth.

    python benchmarks/metrics.py [--num-images 1000] [--batch-size 32] [--num-slots 7]

Also times the coco model's evaluation forward on --model-images images and extrapolates it to
--num-images, to show what share of evaluation time scoring takes. Prints one row per metric in
images per second, the four one by one, and `score`, which shares one contingency table between them
(what evaluation uses).
"""

import argparse
import time
from pathlib import Path

import torch
from machine import cpu_name

from dias.metrics import IGNORE_ID, ari, fg_ari, mbo, miou, score

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dias-coco.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-slots", type=int, default=7)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--model-images", type=int, default=64, help="images timed for the model (0: skip)")
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    batches = []
    for start in range(0, args.num_images, args.batch_size):
        count = min(args.batch_size, args.num_images - start)
        # Blocky label maps: 16x16 cells upsampled, like upsampled slot attention.
        pred = torch.randint(0, args.num_slots, (count, 16, 16), generator=generator)
        gt = torch.randint(0, 8, (count, 16, 16), generator=generator)
        gt[torch.rand(count, 16, 16, generator=generator) < 0.05] = IGNORE_ID
        scale = args.size // 16
        batches.append(
            (
                pred.repeat_interleave(scale, 1).repeat_interleave(scale, 2),
                gt.repeat_interleave(scale, 1).repeat_interleave(scale, 2),
            )
        )

    print(
        f"# {args.num_images} images of {args.size}x{args.size}, {args.num_slots} slots, batch {args.batch_size}; "
        f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print("| metric | seconds | images/s |")
    print("|---|---|---|")
    total = 0.0
    for name, metric in (("ARI", ari), ("FG-ARI", fg_ari), ("mBO", mbo), ("mIoU", miou)):
        start = time.perf_counter()
        for pred, gt in batches:
            metric(pred, gt)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"| {name} | {seconds:.2f} | {args.num_images / seconds:.0f} |")
    print(f"| all four, one by one | {total:.2f} | {args.num_images / total:.0f} |")
    start = time.perf_counter()
    for pred, gt in batches:
        score(pred, gt)
    seconds = time.perf_counter() - start
    print(f"| all four, `score` (one table) | {seconds:.2f} | {args.num_images / seconds:.0f} |")
    if args.model_images:
        model_seconds = model_eval_seconds(args.model_images, args.batch_size) * args.num_images / args.model_images
        print(
            f"| model eval forward, dias-coco (ViT-S/14), extrapolated | {model_seconds:.2f} | "
            f"{args.num_images / model_seconds:.1f} |"
        )
        print(f"\nscoring costs {100 * seconds / model_seconds:.1f}% of the model's own eval time")


def model_eval_seconds(num_images: int, batch_size: int) -> float:
    """Seconds for the coco model's eval forward over `num_images` random 256 px images (random ViT weights)."""
    import logging

    from dias.config import load_config
    from dias.methods import build_model

    logging.disable(logging.WARNING)  # the random-backbone warning
    model = build_model(load_config(CONFIG)).eval()
    images = torch.randint(0, 256, (batch_size, 3, 256, 256), dtype=torch.uint8)
    with torch.inference_mode():
        model(images=images[:2])  # warm-up
        start = time.perf_counter()
        for done in range(0, num_images, batch_size):
            model(images=images[: min(batch_size, num_images - done)])
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
