"""Feature extraction speed of the DINOv2 ViT-S/14 backbone: images per second, fp32 and bf16 autocast, by batch size.

    python benchmarks/features_speed.py [--weights dinov2-vits14] [--batch-sizes 1 16 64] [--out FILE.md]

Times the frozen backbone as dias runs it (`dias.modules.backbone`, uint8 images in, 16 x 16 x 384 tokens out
at 224 px): normalisation, the ViT and the token slice, on random images, after one untimed warm-up call per
row. The weights do not change the cost; without --weights they are random. bf16 rows run under CPU
autocast, and only where the CPU has bf16 matrix instructions (AVX-512 BF16 or AMX); elsewhere bf16 autocast
is slower than fp32 and the row is left out. Prints a Markdown table (median of --rounds timed calls).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
from pathlib import Path

import torch
from machine import cpu_name
from timing import time_calls

from dias.io import atomic_write_bytes
from dias.modules.backbone import ViTBackbone
from dias.runtime.device import Precision, cpu_has_fast_bf16

NAME = "vit_small_patch14_dinov2"
CPU = torch.device("cpu")


def measure(
    backbone: ViTBackbone, *, image_size: int, batch_size: int, precision: str, rounds: int
) -> dict[str, float]:
    """Images per second and ms per image of `backbone` on a batch of random uint8 images (median of rounds)."""
    images = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8)
    autocast = Precision(precision, CPU.type).autocast

    def extract() -> torch.Tensor:
        with autocast():
            return backbone(images)

    seconds = statistics.median(time_calls(extract, steps=rounds, warmup=1, device=CPU))
    return {"images/s": batch_size / seconds, "ms/image": 1000 * seconds / batch_size}


def table(backbone: ViTBackbone, *, image_size: int, batch_sizes: list[int], rounds: int) -> str:
    precisions = ["fp32", "bf16"] if cpu_has_fast_bf16() else ["fp32"]
    side = image_size // backbone.patch_size
    lines = [
        f"# {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {NAME} at {image_size} px "
        f"-> {side} x {side} x {backbone.feature_dim} tokens, median of {rounds} calls, "
        f"load average {os.getloadavg()[0]:.1f} before the run (other processes share the cores)",
        "| precision | batch | images/s | ms/image |",
        "|---|---|---|---|",
    ]
    for precision in precisions:
        for batch_size in batch_sizes:
            rate = measure(backbone, image_size=image_size, batch_size=batch_size, precision=precision, rounds=rounds)
            lines.append(f"| {precision} | {batch_size} | {rate['images/s']:.1f} | {rate['ms/image']:.0f} |")
    if "bf16" not in precisions:
        lines.append("\nbf16 left out: this CPU has no bf16 matrix instructions (AVX-512 BF16 or AMX).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="model.backbone.weights: a name or a file (default: random)")
    parser.add_argument("--image-size", type=int, default=224, help="side in pixels fed to the ViT")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per row")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()
    if args.weights is None:
        logging.disable(logging.WARNING)  # the random-backbone warning: the cost is the same
    backbone = ViTBackbone(NAME, args.weights, image_size=args.image_size, input_scale=1.0)
    text = table(backbone, image_size=args.image_size, batch_sizes=args.batch_sizes, rounds=args.rounds)
    print(text, end="")
    if args.out is not None:
        atomic_write_bytes(args.out, text.encode())


if __name__ == "__main__":
    main()
