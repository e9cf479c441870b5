"""How far can the demo's frozen features and token grid carry a segmentation, before any training?

Frozen history (research/): kept as it was when its results were made, so that a finding can be read next
to the code that produced it. Not maintained, not run by the tests, and not guaranteed to run against the
current package; to measure the package, use benchmarks/.

Ceilings on the synthetic val split, in FG-ARI (masks upsampled bilinearly, as in evaluation):
- `oracle`: the ground truth pooled to the token grid (each token gets its pixels' instance fractions),
  upsampled back and arg-maxed. No model on that grid can do better. `oracle mBO` is its mBO.
- `colour oracle`: the same, but objects of one palette colour share a segment: a perfect grouping
  by colour, which cannot tell two objects of the same colour apart. The scenes draw each object's
  colour from 9, so most scenes with several objects repeat one.
- `colour + connectivity oracle`: the colour oracle with every same-colour group split into its
  4-connected pieces: a perfect grouping by colour and spatial contiguity; only touching or
  occluding objects of one colour stay merged.
- `k-means`: per-image k-means (K slots, k-means++ start, seeded) over the tokens of a feature
  extractor: what grouping the features alone support, with no learning.
Variants: the demo backbone (`patch_stats`, colour descriptors) and the texture statistics it used
before (per-patch colour mean and spread, gradient energy, sub-patch colour; standardised per image).

    python research/demo_features.py [--num-images 200] [--num-slots 7]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from dias.data.records import LmdbReader
from dias.data.synthetic import PALETTE
from dias.masks import masks_from_attention
from dias.metrics import fg_ari, mbo, nanmean
from dias.modules.backbone import OPPONENT, PatchStats

RESULTS = Path(__file__).resolve().parent / "results"


def texture_stats(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The previous demo descriptor: colour mean and std, gradient energy, sub-patch colour; (B, N, 24)."""
    p = patch_size
    x = torch.einsum("oc,bchw->bohw", torch.tensor(OPPONENT), images.float() / 255)
    grad_x = F.pad((x[..., :, 1:] - x[..., :, :-1]).abs(), (0, 1))
    grad_y = F.pad((x[..., 1:, :] - x[..., :-1, :]).abs(), (0, 0, 0, 1))
    mean = F.avg_pool2d(x, p)
    std = (F.avg_pool2d(x * x, p) - mean * mean).clamp_min(0).sqrt()
    sub = F.pixel_unshuffle(F.avg_pool2d(x, p // 2), 2)
    stats = torch.cat([mean, std, F.avg_pool2d(grad_x, p), F.avg_pool2d(grad_y, p), sub], dim=1)
    stats = stats.flatten(2).transpose(1, 2)
    return (stats - stats.mean(dim=1, keepdim=True)) / (stats.std(dim=1, keepdim=True) + 1e-2)


def kmeans(points: torch.Tensor, k: int, generator: torch.Generator, iters: int = 30) -> torch.Tensor:
    """Lloyd's k-means with a k-means++ start on points (N, C) -> labels (N,) long."""
    centres = points[torch.randint(len(points), (1,), generator=generator)]
    for _ in range(k - 1):
        dist = torch.cdist(points, centres).min(dim=1).values ** 2
        pick = torch.multinomial(dist + 1e-12, 1, generator=generator)
        centres = torch.cat([centres, points[pick]])
    for _ in range(iters):
        labels = torch.cdist(points, centres).argmin(dim=1)
        one_hot = F.one_hot(labels, k).float()
        counts = one_hot.sum(dim=0)[:, None]
        centres = torch.where(counts > 0, one_hot.T @ points / counts.clamp_min(1), centres)
    return torch.cdist(points, centres).argmin(dim=1)


def colour_groups(mask: np.ndarray, colours: list[list[int]], connected: bool) -> np.ndarray:
    """Instance mask (H, W) -> segment ids (H, W): one segment per palette colour, or per connected piece."""
    palette = np.asarray(list(PALETTE.values()))
    names = np.abs(np.asarray(colours)[:, None, :] - palette[None]).sum(-1).argmin(1)  # jittered -> nearest
    out = np.zeros_like(mask, dtype=np.int64)
    next_id = 1
    for name in np.unique(names):
        region = np.isin(mask, np.flatnonzero(names == name) + 1)
        pieces, count = ndimage.label(region) if connected else (region.astype(np.int64), 1)
        out[pieces > 0] = pieces[pieces > 0] + next_id - 1
        next_id += count
    return out


def segment_masks(segments: torch.Tensor) -> torch.Tensor:
    """Segment ids (B, H, W), at most 64 of them -> one-hot masks (B, S, H, W), S = the largest id + 1."""
    segments = segments.clamp_max(63)
    return F.one_hot(segments, int(segments.max()) + 1).permute(0, 3, 1, 2).float()


def pooled_ceiling(masks: torch.Tensor, gt: torch.Tensor, grid: int, metric=fg_ari) -> float:
    """A metric of one-hot masks (B, S, H, W) pooled to a grid x grid token grid, upsampled back, arg-maxed."""
    return nanmean(metric(masks_from_attention(F.adaptive_avg_pool2d(masks, grid), gt.shape[-1]), gt))


def labels_to_masks(labels: torch.Tensor, k: int, grid: int) -> torch.Tensor:
    """(B, N) cluster ids -> (B, K, grid, grid) one-hot masks."""
    return F.one_hot(labels, k).transpose(1, 2).float().unflatten(-1, (grid, grid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/synthetic/val.lmdb"))
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--num-slots", type=int, default=7)
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=[16, 8, 4])
    args = parser.parse_args()
    torch.set_num_threads(2)
    with LmdbReader(args.data) as reader:
        records = [reader.read(i) for i in range(min(args.num_images, len(reader)))]
    images = torch.stack([torch.as_tensor(np.array(image)).permute(2, 0, 1) for image, _, _ in records])
    gt = torch.stack([torch.as_tensor(np.asarray(mask, dtype=np.int64)) for _, mask, _ in records])
    colours = [meta["colors"] for _, _, meta in records]
    by_colour, by_colour_and_piece = (
        torch.stack([torch.as_tensor(colour_groups(m.numpy(), c, connected)) for m, c in zip(gt, colours, strict=True)])
        for connected in (False, True)
    )
    ceiling_masks = [segment_masks(s) for s in (gt, by_colour, by_colour_and_piece)]  # once, pooled per grid
    size = images.shape[-1]
    lines = [
        f"# Demo features: FG-ARI ceilings (and the oracle's mBO) on {len(records)} synthetic val images "
        f"({size} px), K = {args.num_slots}",
        "",
        "| patch | grid | oracle | oracle mBO | colour oracle | colour + connectivity oracle | k-means, patch_stats "
        "| k-means, texture stats |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for patch in [1, *args.patch_sizes]:
        grid = size // patch
        row = [str(patch), f"{grid}x{grid}"]
        truth = ceiling_masks[0]
        row += [f"{pooled_ceiling(truth, gt, grid, metric):.3f}" for metric in (fg_ari, mbo)]
        row += [f"{pooled_ceiling(masks, gt, grid):.3f}" for masks in ceiling_masks[1:]]
        if patch == 1:  # pixels: the ceilings of the ground truth itself; k-means is not run on pixels
            lines.append("| " + " | ".join(row + ["", ""]) + " |")
            continue
        for extract in (PatchStats(patch), lambda x, p=patch: texture_stats(x, p)):
            tokens = extract(images)
            generator = torch.Generator().manual_seed(0)
            labels = torch.stack([kmeans(t, args.num_slots, generator) for t in tokens])
            pred = masks_from_attention(labels_to_masks(labels, args.num_slots, grid), size)
            row.append(f"{nanmean(fg_ari(pred, gt)):.3f}")
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo_features.md").write_text(text)


if __name__ == "__main__":
    main()
