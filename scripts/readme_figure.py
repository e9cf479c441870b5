"""The README's picture: the bundled demo model's masks on fresh synthetic scenes, beside the ground truth.

    python scripts/readme_figure.py --out docs/demo-masks.png

Each row is one scene of the built-in generator (never seen in training: another seed): the input, the
ground-truth objects, the model's decoder masks (argmax over slots, as `dias eval` scores them) and the
slot-attention masks of the last iteration.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dias.data.synthetic import render_scene
from dias.demo.reference import load_reference
from dias.io import atomic_write
from dias.masks import masks_from_attention
from dias.train.checkpoint import load_model
from dias.viz.panels import caption, hstack, overlay, to_pil, upscale, vstack

SEED = 2026  # the bundled model's data used seeds 0 (train) and 1 (val): these scenes are new to it
DISPLAY_SIZE = 192


@torch.no_grad()
def make_figure(num_images: int, *, seed: int = SEED) -> torch.Tensor:
    """(3, H, W) uint8: one row [input | ground truth | decoder masks | slot attention] per scene."""
    reference = load_reference()
    model, cfg = load_model(reference.weights)
    model.eval()
    rng = np.random.default_rng(seed)
    size = cfg.data.image_size
    rows = []
    for row in range(num_images):
        image, mask, _ = render_scene(rng, size)
        image = torch.from_numpy(image).permute(2, 0, 1).contiguous()  # (3, H, W) uint8
        out = model(images=image[None])
        decoder = masks_from_attention(out.decoder_attn, size)[0]  # (H, W)
        attn = masks_from_attention(out.attn[-1], size)[0]
        tiles = [
            (image, None, "input"),
            (image, torch.from_numpy(mask.astype(np.int64)), "ground truth"),
            (image, decoder, "dias: decoder masks"),
            (image, attn, "slot attention, last iteration"),
        ]
        shown = []
        for picture, labels, title in tiles:
            tile = upscale(picture if labels is None else overlay(picture, labels), DISPLAY_SIZE)
            shown.append(caption(tile, title) if row == 0 else tile)
        rows.append(hstack(shown, gap=4))
    return vstack(rows, gap=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/demo-masks.png"))
    parser.add_argument("--images", type=int, default=3, help="scenes, one row each")
    args = parser.parse_args()
    figure = to_pil(make_figure(args.images))
    atomic_write(args.out, lambda f: figure.save(f, format="PNG", optimize=True))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
