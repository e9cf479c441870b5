"""Object-discovery metrics as pure batched functions: ARI, FG-ARI, mBO and mIoU.

Inputs are label maps: `pred` (B,H,W) predicted slot indices and `gt` (B,H,W) instance ids, with
0 = background and `IGNORE_ID` = pixels that belong to no annotated segment (void, boundary,
unannotated). The protocol follows the official evaluation code:

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

from dias.data.codec import BACKGROUND_ID, IGNORE_ID

METRIC_NAMES = ("ari", "fg_ari", "mbo", "miou")  # the keys of `score`, in the order results are shown
METRIC_TITLES = {"ari": "ARI", "fg_ari": "ARI-FG", "mbo": "mBO", "miou": "mIoU"}  # as in the official tables


def contingency(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel counts per (predicted label, ground-truth segment), with the segments' ids and the predicted sizes.

    Returns `table` (B,P,G) float64 over pixels whose ground truth is not ignored, `gt_ids` (G,) and
    `pred_sizes` (B,P) float64 over all pixels. Labels are compacted over the batch, so P and G are the
    numbers of distinct labels seen in it.
    """
    _check(pred, gt)
    batch_size = pred.shape[0]
    pred_index, _ = _compact(pred.reshape(batch_size, -1))
    gt_index, gt_ids = _compact(gt.reshape(batch_size, -1))
    num_pred, num_gt = int(pred_index.max()) + 1, len(gt_ids)
    image = torch.arange(batch_size, device=pred.device)[:, None] * (num_pred * num_gt)
    flat = image + pred_index * num_gt + gt_index  # (B,HW)
    counts = torch.bincount(flat.reshape(-1), minlength=batch_size * num_pred * num_gt)
    table = counts.reshape(batch_size, num_pred, num_gt).double()
    pred_sizes = table.sum(dim=2)
    keep = gt_ids != IGNORE_ID  # ignored pixels belong to no segment
    return table[:, :, keep], gt_ids[keep], pred_sizes


def _compact(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map labels to 0..L-1 in sorted order: (index like `labels`, the L distinct values)."""
    labels = labels.long()
    low = int(labels.min())
    if low < 0 or int(labels.max()) > 2**20:
        values, index = torch.unique(labels, return_inverse=True)
        return index, values
    # A lookup table is linear in the pixels, where unique sorts them.
    present = torch.bincount(labels.reshape(-1)) > 0
    lookup = torch.cumsum(present, 0) - 1
    return lookup[labels], torch.nonzero(present).squeeze(1)


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
    table, _, _ = contingency(pred, gt)
    return adjusted_rand_index(table)


def fg_ari(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Adjusted Rand index over foreground pixels only: (B,)."""
    table, gt_ids, _ = contingency(pred, gt)
    return adjusted_rand_index(table[:, :, gt_ids != BACKGROUND_ID])


def iou_matrix(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU per (predicted label, ground-truth segment), (B,P,G) float64, and which segments exist (B,G)."""
    table, _, pred_sizes = contingency(pred, gt)
    return iou_from_table(table, pred_sizes)


def iou_from_table(table: torch.Tensor, pred_sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Predicted masks cover every pixel, ignored ones included (as in the official protocol).
    gt_sizes = table.sum(dim=1)  # (B,G)
    union = pred_sizes[:, :, None] + gt_sizes[:, None, :] - table
    iou = torch.where(union > 0, table / union.clamp(min=1), torch.zeros_like(union))
    return iou, gt_sizes > 0


def mbo(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean best overlap: each segment's best IoU over predictions, averaged over segments: (B,)."""
    return best_overlap(*iou_matrix(pred, gt))


def miou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean IoU under the one-to-one (Hungarian) matching that maximises total IoU: (B,)."""
    return matched_overlap(*iou_matrix(pred, gt))


def score(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """All four metrics from one contingency table: {"ari", "fg_ari", "mbo", "miou"} -> (B,) each."""
    table, gt_ids, pred_sizes = contingency(pred, gt)
    iou, present = iou_from_table(table, pred_sizes)
    return {
        "ari": adjusted_rand_index(table),
        "fg_ari": adjusted_rand_index(table[:, :, gt_ids != BACKGROUND_ID]),
        "mbo": best_overlap(iou, present),
        "miou": matched_overlap(iou, present),
    }


def best_overlap(iou: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    best = iou.max(dim=1).values * present  # (B,G)
    return _mean_over_present(best, present)


def matched_overlap(iou: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
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
