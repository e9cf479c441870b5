"""Object-discovery metrics as pure batched functions: ARI, FG-ARI, mBO and mIoU.

Inputs are label maps: `pred` (B,H,W) predicted slot indices and `gt` (B,H,W) instance ids, with
0 = background and `IGNORE_ID` = pixels that belong to no annotated segment (void, boundary,
unannotated). The protocol follows the official evaluation (../shared/reference/SPEC.md §10):

- Ignored pixels enter no ground-truth segment: they are left out of the ARI contingency table, but a
  predicted mask still covers them, so they count in the union of an IoU.
- The background (id 0) is one ground-truth segment for ARI, mBO and mIoU; FG-ARI leaves it out.
- Contingency tables are float64. An ARI whose denominator is 0 (e.g. one cluster on both sides) is 1.
- An image with no ground-truth pixel left (after ignoring, and for FG-ARI after dropping the
  background) has no score: its entry is NaN, and `nanmean` over a dataset skips it, as the official
  mean over "valid" images does.

Each function returns one value per image, (B,) float64.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

IGNORE_ID = 65535
BACKGROUND_ID = 0


def contingency(pred: torch.Tensor, gt: torch.Tensor, skip_background: bool = False) -> torch.Tensor:
    """Pixel counts per (predicted label, ground-truth segment): (B,P,G) float64.

    Labels are compacted over the batch, so P and G are the numbers of distinct labels seen.
    Pixels whose ground truth is ignored (or background, with `skip_background`) are not counted.
    """
    _check(pred, gt)
    batch_size = pred.shape[0]
    pred = pred.reshape(batch_size, -1).long()
    gt = gt.reshape(batch_size, -1).long()
    counted = gt != IGNORE_ID
    if skip_background:
        counted &= gt != BACKGROUND_ID
    _, pred_index = torch.unique(pred, return_inverse=True)
    gt_values, gt_index = torch.unique(gt, return_inverse=True)
    num_pred = int(pred_index.max()) + 1 if pred_index.numel() else 1
    num_gt = len(gt_values)
    image = torch.arange(batch_size, device=pred.device)[:, None].expand_as(pred)
    flat = (image * num_pred + pred_index) * num_gt + gt_index
    counts = torch.bincount(flat[counted], minlength=batch_size * num_pred * num_gt)
    table = counts.reshape(batch_size, num_pred, num_gt).double()
    # Columns for ignored (and skipped) ids are all zero; drop them so G counts real segments only.
    keep = gt_values != IGNORE_ID
    if skip_background:
        keep &= gt_values != BACKGROUND_ID
    return table[:, :, keep]


def adjusted_rand_index(table: torch.Tensor) -> torch.Tensor:
    """ARI per image from a (B,P,G) contingency table; NaN where the table is empty."""
    table = table.double()
    gt_sizes = table.sum(dim=1)  # (B,G)
    pred_sizes = table.sum(dim=2)  # (B,P)
    num_pixels = gt_sizes.sum(dim=1)  # (B,)
    pairs_both = (table * (table - 1)).sum(dim=(1, 2))
    pairs_gt = (gt_sizes * (gt_sizes - 1)).sum(dim=1)
    pairs_pred = (pred_sizes * (pred_sizes - 1)).sum(dim=1)
    expected = pairs_gt * pairs_pred / (num_pixels * (num_pixels - 1)).clamp(min=1)
    max_index = (pairs_gt + pairs_pred) / 2
    denominator = max_index - expected
    ari = (pairs_both - expected) / torch.where(denominator == 0, 1.0, denominator)
    ari = torch.where(denominator == 0, torch.ones_like(ari), ari)
    return torch.where(num_pixels > 0, ari, torch.full_like(ari, float("nan")))


def ari(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Adjusted Rand index over all annotated pixels, background included: (B,)."""
    return adjusted_rand_index(contingency(pred, gt))


def fg_ari(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Adjusted Rand index over foreground pixels only: (B,)."""
    return adjusted_rand_index(contingency(pred, gt, skip_background=True))


def iou_matrix(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU per (predicted label, ground-truth segment), (B,P,G) float64, and which segments exist (B,G)."""
    _check(pred, gt)
    batch_size = pred.shape[0]
    intersection = contingency(pred, gt)  # (B,P,G), ignored pixels excluded
    _, pred_index = torch.unique(pred.reshape(batch_size, -1).long(), return_inverse=True)
    num_pred = intersection.shape[1]
    # Predicted masks cover every pixel, ignored ones included (as in the official protocol).
    pred_sizes = torch.zeros(batch_size, num_pred, dtype=torch.float64, device=pred.device)
    pred_sizes.scatter_add_(1, pred_index, torch.ones_like(pred_index, dtype=torch.float64))
    gt_sizes = intersection.sum(dim=1)  # (B,G)
    union = pred_sizes[:, :, None] + gt_sizes[:, None, :] - intersection
    iou = torch.where(union > 0, intersection / union.clamp(min=1), torch.zeros_like(union))
    return iou, gt_sizes > 0


def mbo(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean best overlap: each segment's best IoU over predictions, averaged over segments: (B,)."""
    iou, present = iou_matrix(pred, gt)
    best = iou.max(dim=1).values * present  # (B,G)
    return _mean_over_present(best, present)


def miou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean IoU under the one-to-one (Hungarian) matching that maximises total IoU: (B,)."""
    iou, present = iou_matrix(pred, gt)
    matched = torch.zeros_like(present, dtype=torch.float64)
    for b, image_iou in enumerate(iou.cpu().numpy()):
        rows, cols = linear_sum_assignment(image_iou, maximize=True)
        matched[b, torch.as_tensor(cols)] = torch.as_tensor(image_iou[rows, cols], dtype=torch.float64)
    return _mean_over_present(matched * present, present)


def _mean_over_present(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    count = present.sum(dim=1).double()
    mean = values.sum(dim=1) / count.clamp(min=1)
    return torch.where(count > 0, mean, torch.full_like(mean, float("nan")))


def _check(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.shape != gt.shape or pred.dim() < 2:
        raise ValueError(
            f"pred and gt must be label maps of one shape (B,H,W); got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    if pred.is_floating_point() or gt.is_floating_point():
        raise ValueError("pred and gt must hold integer labels, not scores; take the argmax over slots first")


def nanmean(values: np.ndarray | torch.Tensor) -> float:
    """Dataset mean over images that have a score."""
    values = torch.as_tensor(values, dtype=torch.float64)
    valid = ~torch.isnan(values)
    return float(values[valid].mean()) if valid.any() else float("nan")
