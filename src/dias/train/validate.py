"""Scoring a model on a split, the protocol `dias eval` and validation in training share.

    result = evaluate(model, loader, mask_source="decoder", seed=0)
    result.means()  # {"ari": ..., "fg_ari": ..., "mbo": ..., "miou": ...}, fractions in [0, 1]
    means = validate(model, loader, "decoder", seed=0, device=device)  # the same, in training

The predicted masks are the decoder's last cross-attention ("decoder", as in the release) or one
slot-attention iteration ("attn:I", I counted from 0, negative from the end). They are upsampled
bilinearly to the ground-truth resolution and the argmax over slots is scored per image, beside the
baselines (dias.baselines) scored on the same images, resolution and metric code.

Clips (a video model's VideoSlotOutput, batches from dias.data.clip_dataset.collate_clips) are scored per clip by
dias.video_metrics.clip_scores: the official space-time convention under the plain metric names, VideoSAUR's
("videosaur/fg_ari", "videosaur/mbo") and the per-frame image metrics ("frame/ari", ...) beside it; the
baselines become their video versions (baselines.video_baseline_masks: grid and Voronoi constant over time,
k-means per frame).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from dias.baselines import BASELINE_NAMES, baseline_masks, video_baseline_masks
from dias.masks import masks_from_attention, select_masks, square_grid
from dias.methods.base import SlotModel, SlotOutput
from dias.methods.video import VideoSlotOutput
from dias.metrics import METRIC_NAMES, nanmean, score
from dias.runtime.device import resolve_precision
from dias.schema import DECODER_SOURCE, parse_mask_source
from dias.train.features import batch_inputs
from dias.video_metrics import clip_scores


def validate(
    model: SlotModel,
    loader: DataLoader,
    mask_source: str,
    seed: int,
    device: torch.device,
    precision: str = "fp32",
    *,
    baselines: dict[str, float] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float] | None:
    """Dataset means {"ari", "fg_ari", "mbo", "miou"} and the baselines' as "BASELINE/METRIC" (dias.baselines).

    The baselines depend on the data, the frozen backbone and the seed, never on the trained weights: pass
    `baselines` (the `baseline_part` of an earlier call on the same loader and seed) to reuse them instead
    of scoring them again. The model returns to its mode, the caller's RNG is untouched. None when
    `should_stop` (asked between batches) stopped it part-way: part of the split is no score.
    """
    was_training = model.training
    try:
        result = evaluate(
            model, loader, mask_source=mask_source, seed=seed, device=device, progress=False, precision=precision,
            baselines=BASELINE_NAMES if baselines is None else (), should_stop=should_stop,
        )  # fmt: skip  # evaluate forks the RNG itself
        if should_stop is not None and should_stop():
            return None
        means = {name: float(value) for name, value in result.means().items()}
        for baseline, values in result.baseline_means().items():
            means |= {f"{baseline}/{name}": float(value) for name, value in values.items()}
        return means | (baselines or {})
    finally:
        model.train(was_training)


def baseline_part(means: dict[str, float]) -> dict[str, float]:
    """The "BASELINE/METRIC" entries of validate's means."""
    return {key: value for key, value in means.items() if key.split("/")[0] in BASELINE_NAMES}


# Called once per batch with (batch, model output, predicted label maps (B,H,W) or (B,T,H,W)); the visual report
# uses it.
BatchHook = Callable[[dict[str, Any], SlotOutput, torch.Tensor], None]


@dataclass
class EvalResult:
    # metric -> (num_images,) float64; NaN: the image has nothing to score. Clips: one row per clip, the
    # conventions' labelled keys beside the official ones (dias.video_metrics.clip_scores)
    scores: dict[str, np.ndarray]
    indices: np.ndarray  # (num_images,) int64 dataset index of each row (for clips: of each clip's video)
    num_skipped: int  # corrupt records dropped by the loader
    mask_size: tuple[int, int] | None  # (H, W) at which the masks were scored
    mask_source: str
    seed: int
    # baseline -> metric -> (num_images,) float64, scored on the same images, resolution and metric code
    baselines: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    clip_frames: tuple[int, ...] = ()  # the frame counts of the scored clips, sorted; empty for images

    @property
    def num_images(self) -> int:
        return len(self.indices)

    def num_scored(self) -> dict[str, int]:
        """Images with a score, per metric (FG-ARI has none for an image that is all background)."""
        return {name: int(np.sum(~np.isnan(values))) for name, values in self.scores.items()}

    def means(self) -> dict[str, float]:
        """Dataset means over the images with a score, as fractions."""
        return {name: nanmean(values) for name, values in self.scores.items()}

    def baseline_means(self) -> dict[str, dict[str, float]]:
        """{baseline: {metric: dataset mean}}, as fractions."""
        return {b: {name: nanmean(values) for name, values in s.items()} for b, s in self.baselines.items()}


def evaluate(
    model: SlotModel,
    loader: DataLoader,
    *,
    mask_source: str = DECODER_SOURCE,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    max_batches: int | None = None,
    precision: str = "fp32",
    on_batch: BatchHook | None = None,
    baselines: tuple[str, ...] = BASELINE_NAMES,
    should_stop: Callable[[], bool] | None = None,
) -> EvalResult:
    """Per-image ARI, FG-ARI, mBO and mIoU over `loader` (batches from `dias.data.dataset.collate`), or per clip
    (batches from `dias.data.clip_dataset.collate_clips`, in the conventions of dias.video_metrics.clip_scores).

    Each of `baselines` (see dias.baselines) is scored on the same images with the same number of
    slots, token grid, upsampling and metrics; k-means runs on the tokens the model was given.

    The ground truth is scored at its own size (EvalTransform gives it the model's input size).
    The initializer's noise is drawn in eval too (as in the release), from a generator seeded with `seed`,
    so a seed gives the same numbers for the same batch size; the caller's RNG state is left untouched.
    `should_stop` is asked before each batch (training's validation passes its Ctrl-C / SIGTERM request);
    once it says True, the result holds the batches scored so far.
    """
    parse_mask_source(mask_source)
    device = torch.device(device)
    model.eval().to(device)
    scores = _no_scores()
    baseline_scores = {baseline: _no_scores() for baseline in baselines}
    indices: list[np.ndarray] = []
    num_skipped, mask_size, clip_frames = 0, None, set()
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    autocast = resolve_precision(precision, device, key="eval.precision").autocast()
    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices), torch.inference_mode(), autocast:
        torch.manual_seed(seed)
        batches = tqdm(loader, total=total, desc="eval", disable=not progress, dynamic_ncols=True)
        for batch_index, batch in enumerate(batches):
            if (max_batches is not None and batch_index >= max_batches) or (should_stop is not None and should_stop()):
                break
            num_skipped += int(batch.get("num_skipped", 0))
            if "index" not in batch:  # every record of this batch was skipped
                continue
            # instance ids (B,H,W), or (B,T,H,W) with ids kept across frames; 0 background, IGNORE_ID ignored
            gt = batch["masks"] if "video" in batch else batch["mask"]
            mask_size = tuple(gt.shape[-2:])
            out = model(**batch_inputs(batch, device, boxes=getattr(model, "conditional", False)))
            score_batch = _score_clips if isinstance(out, VideoSlotOutput) else _score_batch
            pred = score_batch(
                out, gt, device, mask_source=mask_source, seed=seed, scores=scores, baseline_scores=baseline_scores
            )
            if pred.dim() == 4:
                clip_frames.add(pred.shape[1])
            indices.append(np.asarray(batch["index"]).reshape(-1))
            if on_batch is not None:
                on_batch(batch, out, pred)
    return EvalResult(
        scores=_concat_scores(scores), indices=_concat(indices, np.int64), num_skipped=num_skipped,
        mask_size=mask_size, mask_source=mask_source, seed=seed,
        baselines={baseline: _concat_scores(per_metric) for baseline, per_metric in baseline_scores.items()},
        clip_frames=tuple(sorted(clip_frames)),
    )  # fmt: skip


def _score_batch(
    out: SlotOutput,
    gt: torch.Tensor,
    device: torch.device,
    *,
    mask_source: str,
    seed: int,
    scores: dict[str, list[np.ndarray]],
    baseline_scores: dict[str, dict[str, list[np.ndarray]]],
) -> torch.Tensor:
    """Score one batch's masks, the model's and each baseline's, adding per-image rows; the (B, H, W) prediction."""
    mask_size = tuple(gt.shape[-2:])
    masks = select_masks(decoder_attn=out.decoder_attn, attn=out.attn, mask_source=mask_source).float()  # (B, K, N)
    pred = masks_from_attention(masks, mask_size)  # (B, H, W)
    gt = gt.to(device, non_blocking=True)
    _add_rows(scores, score(pred, gt))
    for baseline, per_metric in baseline_scores.items():
        blind = baseline_masks(
            baseline, out.features, num_slots=masks.shape[1], grid_size=square_grid(masks.shape[2]), seed=seed
        )
        _add_rows(per_metric, score(masks_from_attention(blind, mask_size), gt))
    return pred


def _score_clips(
    out: VideoSlotOutput,
    gt: torch.Tensor,
    device: torch.device,
    *,
    mask_source: str,
    seed: int,
    scores: dict[str, list[np.ndarray]],
    baseline_scores: dict[str, dict[str, list[np.ndarray]]],
) -> torch.Tensor:
    """_score_batch for clips: rows per clip (dias.video_metrics.clip_scores); the (B, T, H, W) prediction.

    attn:-1 is each frame's last slot-attention map (the only one a video output keeps)."""
    b, t = gt.shape[:2]
    mask_size = tuple(gt.shape[-2:])
    masks = (out.decoder_attn if mask_source == DECODER_SOURCE else out.attn).float()  # (B, T, K, N)
    num_slots, grid = masks.shape[2], square_grid(masks.shape[3])
    pred = masks_from_attention(masks.flatten(0, 1), mask_size).unflatten(0, (b, t))  # (B, T, H, W)
    gt = gt.to(device, non_blocking=True)
    _add_rows(scores, clip_scores(pred, gt))
    for baseline, per_metric in baseline_scores.items():
        blind = video_baseline_masks(baseline, out.features, num_slots=num_slots, grid_size=grid, seed=seed)
        blind_pred = masks_from_attention(blind.flatten(0, 1), mask_size).unflatten(0, (b, t))
        _add_rows(per_metric, clip_scores(blind_pred, gt))
    return pred


def _no_scores() -> dict[str, list[np.ndarray]]:
    return {name: [] for name in METRIC_NAMES}


def _add_rows(scores: dict[str, list[np.ndarray]], batch_scores: dict[str, torch.Tensor]) -> None:
    for name, values in batch_scores.items():
        scores.setdefault(name, []).append(values.cpu().numpy())


def _concat_scores(scores: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: _concat(values, np.float64) for name, values in scores.items()}


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)
