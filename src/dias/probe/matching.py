"""Matching slots to ground-truth objects, the rule of the DIAS authors' recognition probe.

    iou = segment_iou(labels, objects)            # labels (H, W) slot per pixel; objects (M, H, W) bool
    pairs = match_slots(iou, threshold=0.1)       # [(slot, object), ...]: Hungarian, maximising IoU, IoU > 0.1

The official matching code (SmoothSA, RandSF.Q and later repositories of the authors) also filters the
pairs with a test meant to drop padded ground-truth columns, but it tests the *column indices* against the
*values* of a boolean mask, {False, True}: only pairs with object column 0 or 1 survive, so at most two
objects per image are matched, chosen by dataset order. `official_cap=True` reproduces that filter, for a
comparison with published tables; by default every pair above the threshold is kept.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

OFFICIAL_CAP_COLUMNS = (0, 1)  # the values of a boolean mask, which the official filter tests indices against


def segment_iou(labels: torch.Tensor, objects: torch.Tensor, num_slots: int) -> torch.Tensor:
    """IoU (K, M) float64 between each slot's segment (labels == k) and each object mask (M, H, W) bool.

    Pixels outside every object (background, stuff, ignore) count for the slots' segments, as in the
    official code, which compares whole-image segments. An empty segment or object has IoU 0 with all.
    Counted with integer histograms: exact, and fast at image resolution.
    """
    labels = labels.long().flatten()  # (H*W,)
    segment_sizes = torch.bincount(labels, minlength=num_slots)  # (K,)
    flat = objects.flatten(1)  # (M, H*W)
    if len(flat) == 0:
        return torch.zeros(num_slots, 0, dtype=torch.float64)
    intersection = torch.stack([torch.bincount(labels[mask], minlength=num_slots) for mask in flat], dim=1)
    union = segment_sizes[:, None] + flat.sum(1)[None] - intersection  # (K, M)
    iou = intersection.double() / union.clamp_min(1).double()
    return torch.where(union > 0, iou, torch.zeros_like(iou))


def match_slots(iou: torch.Tensor, *, threshold: float = 0.1, official_cap: bool = False) -> list[tuple[int, int]]:
    """(slot, object) pairs: the one-to-one assignment maximising total IoU, kept where IoU > threshold.

    More objects than slots leaves some objects unmatched, fewer leaves some slots unused; ties are broken
    by scipy's assignment (deterministically). `official_cap` keeps only objects 0 and 1 (see the module).
    """
    if iou.numel() == 0:
        return []
    rows, cols = linear_sum_assignment(iou.cpu().numpy(), maximize=True)
    pairs = [(int(k), int(m)) for k, m in zip(rows, cols, strict=True) if iou[k, m] > threshold]
    if official_cap:
        pairs = [(k, m) for k, m in pairs if m in OFFICIAL_CAP_COLUMNS]
    return sorted(pairs, key=lambda pair: pair[1])


def box_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """(4,) float32 left, top, right, bottom of a (H, W) bool mask, normalised by W and H; the right and
    bottom edges are those of the last pixel (a one-pixel object at x has left x / W and right (x + 1) / W)."""
    height, width = mask.shape
    rows, cols = np.nonzero(mask.cpu().numpy())
    if len(rows) == 0:
        raise ValueError("an empty mask has no box")
    return torch.tensor(
        [cols.min() / width, rows.min() / height, (cols.max() + 1) / width, (rows.max() + 1) / height],
        dtype=torch.float32,
    )


def box_iou(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU (P,) of matching boxes (P, 4) as left, top, right, bottom; a degenerate box has IoU 0."""
    left = torch.maximum(predicted[:, 0], target[:, 0])
    top = torch.maximum(predicted[:, 1], target[:, 1])
    right = torch.minimum(predicted[:, 2], target[:, 2])
    bottom = torch.minimum(predicted[:, 3], target[:, 3])
    intersection = (right - left).clamp_min(0) * (bottom - top).clamp_min(0)

    def area(box: torch.Tensor) -> torch.Tensor:
        return (box[:, 2] - box[:, 0]).clamp_min(0) * (box[:, 3] - box[:, 1]).clamp_min(0)

    union = area(predicted) + area(target) - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1e-12), torch.zeros_like(union))
