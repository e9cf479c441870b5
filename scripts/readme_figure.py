"""The README's pictures: a bundled demo model's masks on fresh synthetic scenes, beside the ground truth;
and the DINOv2 demo model's masks on the four shipped photos, beside k-means on the same tokens.

    python scripts/readme_figure.py --out docs/demo-masks.png
    python scripts/readme_figure.py --photos --out docs/demo-photos.png

Each row is one scene of the built-in generator (never seen in training: another seed): the input, the
ground-truth objects, the model's decoder masks (argmax over slots, as `dias eval` scores them) and the
slot-attention masks of the last iteration. --photos draws dias.demo.photos' panel (what `dias demo`
adds to its report) smaller and in 128 colours, to keep the file small.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dias.data.synthetic import render_scene
from dias.demo.photos import photo_panel
from dias.demo.reference import DINOV2, bundled_reference_dir, load_reference
from dias.io import atomic_write
from dias.masks import masks_from_attention
from dias.train.checkpoint import load_model
from dias.viz.panels import caption, hstack, overlay, to_pil, upscale, vstack

PHOTO_HEIGHT = 128
PHOTO_COLOURS = 128
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
    parser.add_argument("--photos", action="store_true", help="the DINOv2 demo model on the shipped photos")
    args = parser.parse_args()
    if args.photos:
        model, cfg = load_model(load_reference(bundled_reference_dir(DINOV2)).weights)
        figure = to_pil(photo_panel(model, cfg, height=PHOTO_HEIGHT)).quantize(PHOTO_COLOURS)
    else:
        figure = to_pil(make_figure(args.images))
    atomic_write(args.out, lambda f: figure.save(f, format="PNG", optimize=True))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
