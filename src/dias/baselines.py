"""Segmentations that a trained model must beat to mean anything: blind partitions and k-means on the tokens.

Each baseline gives one-hot slot masks (B, K, h, w) on the model's token grid, so it goes through the
same bilinear upsampling, argmax and metrics as the model's own masks:

- "grid": a fixed partition of the image into K near-square blocks, the same for every image;
- "voronoi": a fixed partition into the Voronoi cells of K points drawn once with a fixed seed;
- "kmeans": per-image k-means with K clusters over the frozen backbone tokens, no learning.

The first two never look at the image; the third looks only at the features the model is given.

    masks = baseline_masks("kmeans", tokens, num_slots=7, grid_size=(16, 16), seed=0)  # (B, 7, 16, 16)

For video, `video_baseline_masks` applies the same rules to every frame of a clip, (B, T, N, C) tokens to
(B, T, K, h, w) masks: the grid and the Voronoi cells are one partition for all frames (constant over
time, so each cell is a track), and k-means runs on each frame's tokens alone, so its cluster ids are drawn
afresh per frame and carry no identity from one frame to the next.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BASELINE_NAMES = ("grid", "voronoi", "kmeans")
BASELINE_TITLES = {
    "grid": "fixed grid (image-blind)",
    "voronoi": "fixed Voronoi cells (image-blind)",
    "kmeans": "k-means on the backbone tokens",
}
KMEANS_ITERS = 30
KMEANS_RESTARTS = 3


def _cell_centres(grid_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, x) of every token centre in [0, 1], each (h, w)."""
    h, w = grid_size
    y = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    x = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    return torch.meshgrid(y, x, indexing="ij")


def _one_hot(labels: torch.Tensor, num_cells: int) -> torch.Tensor:
    """Labels (..., h, w) long -> masks (..., K, h, w) float32."""
    return F.one_hot(labels, num_cells).movedim(-1, -3).float()


def grid_partition(num_cells: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """Masks (K, h, w) of K blocks: round(sqrt(K)) horizontal bands, each split into equal-width cells.

    The K cells are spread over the bands as evenly as possible (K = 7: bands of 2, 2 and 3 cells), so
    every K gets exactly K cells of near-equal area.
    """
    if num_cells < 1:
        raise ValueError(f"a grid needs at least one cell, got {num_cells}")
    num_bands = max(1, round(math.sqrt(num_cells)))
    per_band = [num_cells // num_bands + (band >= num_bands - num_cells % num_bands) for band in range(num_bands)]
    offsets = torch.tensor([0, *per_band[:-1]]).cumsum(0)
    y, x = _cell_centres(grid_size)
    band = (y * num_bands).long().clamp(max=num_bands - 1)  # (h, w)
    counts = torch.tensor(per_band)[band]
    column = (x * counts).long().clamp(max=counts - 1)
    return _one_hot(offsets[band] + column, num_cells)


def voronoi_partition(num_cells: int, grid_size: tuple[int, int], *, seed: int = 0) -> torch.Tensor:
    """Masks (K, h, w) of the Voronoi cells of K points drawn uniformly in the unit square with `seed`."""
    if num_cells < 1:
        raise ValueError(f"a Voronoi partition needs at least one cell, got {num_cells}")
    points = torch.rand(num_cells, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y, x = _cell_centres(grid_size)
    distance = (y[..., None] - points[:, 0]) ** 2 + (x[..., None] - points[:, 1]) ** 2  # (h, w, K)
    return _one_hot(distance.argmin(dim=-1), num_cells)


def kmeans(
    tokens: torch.Tensor,
    num_clusters: int,
    *,
    seed: int = 0,
    num_iters: int = KMEANS_ITERS,
    num_restarts: int = KMEANS_RESTARTS,
) -> torch.Tensor:
    """Per-image k-means (Lloyd, k-means++ seeding) of tokens (B, N, C) -> labels (B, N) long.

    Runs in float32 on the tokens' device, with autocast off, batched over images; of `num_restarts`
    seedings per image the one with the lowest within-cluster sum of squares wins. Deterministic for a
    seed. A cluster that loses all its tokens keeps its centre. A seeding's iterations stop once no label
    changes (the centres would not either).
    """
    b, n, _ = tokens.shape
    if not 1 <= num_clusters <= n:
        raise ValueError(f"k-means needs 1 <= num_clusters <= {n} tokens, got {num_clusters}")
    with torch.autocast(tokens.device.type, enabled=False):
        return _kmeans(tokens.detach().float(), num_clusters, seed, num_iters, num_restarts)


def _kmeans(x: torch.Tensor, num_clusters: int, seed: int, num_iters: int, num_restarts: int) -> torch.Tensor:
    b, n, _ = x.shape
    generator = torch.Generator(device=x.device).manual_seed(seed)
    best_labels = torch.zeros(b, n, dtype=torch.long, device=x.device)
    best_inertia = torch.full((b,), math.inf, device=x.device)
    token_norms = x.square().sum(dim=2)  # (B, N), once for all restarts
    for _ in range(num_restarts):
        centres = _kmeans_plus_plus(x, token_norms, num_clusters, generator)  # (B, K, C)
        labels = None
        for _ in range(num_iters):
            nearest = _squared_distances(x, token_norms, centres).argmin(dim=2)  # (B, N)
            if labels is not None and torch.equal(nearest, labels):
                break  # converged: the centres below are the ones already computed from these labels
            labels = nearest
            one_hot = F.one_hot(labels, num_clusters).to(x.dtype)  # (B, N, K)
            counts = one_hot.sum(dim=1)  # (B, K)
            sums = one_hot.transpose(1, 2) @ x  # (B, K, C)
            centres = torch.where(counts[..., None] > 0, sums / counts.clamp(min=1)[..., None], centres)
        distance = _squared_distances(x, token_norms, centres)  # (B, N, K)
        labels = distance.argmin(dim=2)
        inertia = distance.gather(2, labels[..., None]).squeeze(2).sum(dim=1)  # (B,)
        better = inertia < best_inertia
        best_labels = torch.where(better[:, None], labels, best_labels)
        best_inertia = torch.where(better, inertia, best_inertia)
    return best_labels


def _squared_distances(x: torch.Tensor, token_norms: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """|x - c|^2 (B, N, K) as |x|^2 - 2 x.c + |c|^2: one small matrix product, the tokens' norms given."""
    cross = x @ centres.transpose(1, 2)  # (B, N, K)
    return (token_norms[..., None] - 2 * cross + centres.square().sum(dim=2)[:, None]).clamp(min=0)


def _kmeans_plus_plus(
    x: torch.Tensor, token_norms: torch.Tensor, num_clusters: int, generator: torch.Generator
) -> torch.Tensor:
    """k-means++ seeding: each next centre is a token drawn with probability proportional to D^2."""
    b, n, _ = x.shape
    rows = torch.arange(b, device=x.device)
    first = torch.randint(n, (b,), generator=generator, device=x.device)
    centres = [x[rows, first]]  # each (B, C)
    nearest = _squared_distances(x, token_norms, centres[0][:, None]).squeeze(2)  # (B, N)
    for _ in range(1, num_clusters):
        weights = nearest + 1e-12  # an image of identical tokens still draws
        chosen = torch.multinomial(weights / weights.sum(dim=1, keepdim=True), 1, generator=generator).squeeze(1)
        centres.append(x[rows, chosen])
        nearest = torch.minimum(nearest, _squared_distances(x, token_norms, centres[-1][:, None]).squeeze(2))
    return torch.stack(centres, dim=1)


def baseline_masks(
    name: str, tokens: torch.Tensor, *, num_slots: int, grid_size: tuple[int, int], seed: int = 0
) -> torch.Tensor:
    """The masks (B, K, h, w) of baseline `name` for a batch of tokens (B, N, C) on an h x w grid."""
    b, n, _ = tokens.shape
    if grid_size[0] * grid_size[1] != n:
        raise ValueError(f"a {grid_size[0]}x{grid_size[1]} grid does not hold {n} tokens")
    if name == "grid":
        masks = grid_partition(num_slots, grid_size)
    elif name == "voronoi":
        masks = voronoi_partition(num_slots, grid_size, seed=seed)
    elif name == "kmeans":
        labels = kmeans(tokens, num_slots, seed=seed).view(b, *grid_size)
        return _one_hot(labels, num_slots)
    else:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINE_NAMES)}")
    return masks.to(tokens.device).expand(b, -1, -1, -1)


def video_baseline_masks(
    name: str, tokens: torch.Tensor, *, num_slots: int, grid_size: tuple[int, int], seed: int = 0
) -> torch.Tensor:
    """The masks (B, T, K, h, w) of baseline `name` for clips of tokens (B, T, N, C), frame by frame."""
    if tokens.dim() != 4:
        raise ValueError(f"video tokens must be (B, T, N, C), got {tuple(tokens.shape)}")
    b, t = tokens.shape[:2]
    masks = baseline_masks(name, tokens.flatten(0, 1), num_slots=num_slots, grid_size=grid_size, seed=seed)
    return masks.unflatten(0, (b, t))  # (B·T, K, h, w) -> (B, T, K, h, w)
