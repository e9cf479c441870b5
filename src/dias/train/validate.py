"""Scoring a model on a split, the protocol `dias eval` and validation in training share.

    result = evaluate(model, loader, mask_source="decoder", seed=0)
    result.means()  # {"ari": ..., "fg_ari": ..., "mbo": ..., "miou": ...}, fractions in [0, 1]
    means = validate(model, loader, "decoder", seed=0, device=device)  # the same, in training

The predicted masks are the decoder's last cross-attention ("decoder", as in the release) or one
slot-attention iteration ("attn:I", I counted from 0, negative from the end). They are upsampled
bilinearly to the ground-truth resolution and the argmax over slots is scored per image, beside the
baselines (dias.baselines) scored on the same images, resolution and metric code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from dias.baselines import BASELINE_NAMES, baseline_masks
from dias.masks import masks_from_attention, select_masks, square_grid
from dias.methods.base import SlotModel, SlotOutput
from dias.metrics import METRIC_NAMES, nanmean, score
from dias.runtime.device import resolve_precision
from dias.schema import DECODER_SOURCE, parse_mask_source
from dias.train.features import batch_inputs


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


# Called once per batch with (batch, model output, predicted label maps (B,H,W)); the visual report uses it.
BatchHook = Callable[[dict[str, Any], SlotOutput, torch.Tensor], None]


@dataclass
class EvalResult:
    scores: dict[str, np.ndarray]  # metric -> (num_images,) float64; NaN: the image has nothing to score
    indices: np.ndarray  # (num_images,) int64 dataset index of each row
    num_skipped: int  # corrupt records dropped by the loader
    mask_size: tuple[int, int] | None  # (H, W) at which the masks were scored
    mask_source: str
    seed: int
    # baseline -> metric -> (num_images,) float64, scored on the same images, resolution and metric code
    baselines: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

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
    """Per-image ARI, FG-ARI, mBO and mIoU over `loader` (batches from `dias.data.dataset.collate`).

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
    num_skipped, mask_size = 0, None
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
            gt = batch["mask"]  # (B,H,W) instance ids, 0 background, IGNORE_ID ignored
            mask_size = tuple(gt.shape[-2:])
            out = model(**batch_inputs(batch, device))
            pred = _score_batch(
                out, gt, device, mask_source=mask_source, seed=seed, scores=scores, baseline_scores=baseline_scores
            )
            indices.append(np.asarray(batch["index"]).reshape(-1))
            if on_batch is not None:
                on_batch(batch, out, pred)
    return EvalResult(
        scores=_concat_scores(scores), indices=_concat(indices, np.int64), num_skipped=num_skipped,
        mask_size=mask_size, mask_source=mask_source, seed=seed,
        baselines={baseline: _concat_scores(per_metric) for baseline, per_metric in baseline_scores.items()},
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


def _no_scores() -> dict[str, list[np.ndarray]]:
    return {name: [] for name in METRIC_NAMES}


def _add_rows(scores: dict[str, list[np.ndarray]], batch_scores: dict[str, torch.Tensor]) -> None:
    for name, values in batch_scores.items():
        scores[name].append(values.cpu().numpy())


def _concat_scores(scores: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: _concat(values, np.float64) for name, values in scores.items()}


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)
