"""Video object-discovery metrics: the image metrics of `dias.metrics` over a clip, in three labelled conventions.

Inputs are label maps over a clip: `pred` (B,T,H,W) predicted slot indices and `gt` (B,T,H,W) instance ids
kept across frames (0 = background, `IGNORE_ID` = no segment), as in `dias.metrics`.

- "video" (`video_score`): each clip is one space-time volume, `(B,T,H,W) -> (B, T·H·W)`, and the image
  metrics are computed on it, as the official SmoothSA-video and RandSF.Q evaluation does
  (https://github.com/Genera1Z/SmoothSA, `object_centric_bench/learn/metric.py` with the configs' `acc_fn_v`:
  `rearrange(segment, "b t h w s -> b (t h w) s")`). ARI keeps the background, FG-ARI drops it, and mBO and
  mIoU **include the background track** as one segment. A segment is a track: a slot must follow one object
  through the clip, so a slot that swaps objects mid-clip lowers every score.
- "videosaur" (`videosaur_score`): the convention of VideoSAUR and SlotContrast
  (https://github.com/martius-lab/videosaur, `videosaur/metrics.py`): video FG-ARI and video mBO over the
  same volume, both **without** the background. Their papers' numbers compare with these, not with "video".
- "frame" (`frame_score`): the image metrics of every frame on its own, (B,T); a frame's slots need not
  agree with the next frame's, so identity switches cost nothing here.

Each clip's score is a float64 value; a clip (or frame) with no ground-truth pixel left has NaN, and
`dias.metrics.nanmean` over a dataset skips it, as the official mean over valid samples does.

    scores = video_score(pred, gt)  # {"ari", "fg_ari", "mbo", "miou"} -> (B,) each
"""

from __future__ import annotations

import torch

from dias.data.codec import BACKGROUND_ID
from dias.metrics import METRIC_NAMES, adjusted_rand_index, best_overlap, contingency, iou_from_table, score

VIDEO_CONVENTIONS = ("video", "videosaur", "frame")  # the keys of `score_all`, in the order results are shown
VIDEO_CONVENTION_TITLES = {
    "video": "video (space-time volume, background in mBO/mIoU; SmoothSA-v, RandSF.Q)",
    "videosaur": "video, background excluded (VideoSAUR, SlotContrast)",
    "frame": "per frame (image metrics, mean over frames)",
}
# Short names of the conventions for table rows, and the prefix of each one's keys in `clip_scores`.
VIDEO_CONVENTION_LABELS = {"video": "video", "videosaur": "VideoSAUR", "frame": "per frame"}
VIDEO_CONVENTION_PREFIXES = {"video": "", "videosaur": "videosaur/", "frame": "frame/"}
VIDEOSAUR_METRIC_NAMES = ("fg_ari", "mbo")


def _check_clips(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.dim() != 4 or pred.shape != gt.shape:
        raise ValueError(
            f"pred and gt must be label maps of one clip shape (B,T,H,W); got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )


def _volume(labels: torch.Tensor) -> torch.Tensor:
    """(B,T,H,W) -> (B, T·H, W): time stacked onto the rows, so each clip is one label map."""
    return labels.flatten(1, 2)


def video_score(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """ARI, FG-ARI, mBO and mIoU of each clip over its space-time volume: {"ari", ...} -> (B,) float64."""
    _check_clips(pred, gt)
    return score(_volume(pred), _volume(gt))


def videosaur_score(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """FG-ARI and mBO of each clip over its volume, background excluded: {"fg_ari", "mbo"} -> (B,) float64.

    The predicted masks still cover background pixels: they count in the union of an IoU.
    """
    _check_clips(pred, gt)
    table, gt_ids, pred_sizes = contingency(_volume(pred), _volume(gt))
    foreground = gt_ids != BACKGROUND_ID
    iou, present = iou_from_table(table, pred_sizes)
    return {
        "fg_ari": adjusted_rand_index(table[:, :, foreground]),
        "mbo": best_overlap(iou[:, :, foreground], present[:, foreground]),
    }


def frame_score(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """The image metrics of every frame: {"ari", "fg_ari", "mbo", "miou"} -> (B,T) float64.

    Average with `nanmean` over all frames of a dataset (frames without ground truth are NaN).
    """
    _check_clips(pred, gt)
    b, t = pred.shape[:2]
    return {name: value.view(b, t) for name, value in score(pred.flatten(0, 1), gt.flatten(0, 1)).items()}


def score_all(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """Every convention at once: {"video": (B,) each, "videosaur": (B,) each, "frame": (B,T) each}."""
    return {"video": video_score(pred, gt), "videosaur": videosaur_score(pred, gt), "frame": frame_score(pred, gt)}


def clip_scores(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """One row per clip, (B,) float64 each, under labelled keys: the "video" convention as the plain metric names
    (the official numbers), "videosaur/fg_ari", "videosaur/mbo", and "frame/<metric>", the mean over the clip's
    frames that have ground truth (NaN when none has)."""
    scores = score_all(pred, gt)
    scores["frame"] = {name: value.nanmean(dim=1) for name, value in scores["frame"].items()}
    return {
        VIDEO_CONVENTION_PREFIXES[convention] + name: value
        for convention, per_metric in scores.items()
        for name, value in per_metric.items()
    }


def convention_metrics(metrics: dict[str, float | None], convention: str) -> dict[str, float | None]:
    """One convention's figures out of a flat `clip_scores`-keyed dict, under the plain metric names."""
    prefix = VIDEO_CONVENTION_PREFIXES[convention]
    names = VIDEOSAUR_METRIC_NAMES if convention == "videosaur" else METRIC_NAMES
    return {name: metrics.get(prefix + name) for name in names}
