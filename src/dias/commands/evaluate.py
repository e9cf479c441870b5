"""Evaluation: score a model's masks on a split (the official protocol) and write an eval card.

    result = evaluate(model, loader, mask_source="decoder", seed=0)
    result.means()  # {"ari": ..., "fg_ari": ..., "mbo": ..., "miou": ...}, fractions in [0, 1]
    run_eval("runs/demo/last.pt", out_dir="runs/demo/eval-val")  # writes metrics.json and config.yaml

The predicted masks are the decoder's last cross-attention ("decoder", as in the release) or one
slot-attention iteration ("attn:I", I counted from 0, negative from the end). They are upsampled
bilinearly to the ground-truth resolution and the argmax over slots is scored per image.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from dias import __version__
from dias.baselines import BASELINE_NAMES, BASELINE_TITLES, KMEANS_RESTARTS, baseline_masks
from dias.config import CONFIG_FILE_NAME, save_config
from dias.data.codec import IGNORE_ID
from dias.data.dataset import LmdbDataset, collate
from dias.data.records import split_path
from dias.data.transforms import EvalTransform
from dias.io import atomic_write_bytes, file_sha256, require_folder
from dias.masks import masks_from_attention, select_masks, square_grid
from dias.methods.base import SlotModel, SlotOutput
from dias.metrics import METRIC_NAMES, nanmean, score
from dias.runtime.device import resolve_device, resolve_precision
from dias.schema import DECODER_SOURCE, Config, parse_mask_source
from dias.train.checkpoint import load_model
from dias.train.features import batch_inputs, open_feature_split
from dias.viz.gallery import VizCollector, scores_table, write_visual_report
from dias.viz.tables import to_markdown

log = logging.getLogger(__name__)

METRICS_FILE_NAME = "metrics.json"
EVAL_DIR_PREFIX = "eval-"

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


def default_out_dir(checkpoint: str | Path, split: str, mask_source: str = DECODER_SOURCE) -> Path:
    """<checkpoint folder>/eval-<split>, with the mask source appended when it is not the decoder."""
    name = f"{EVAL_DIR_PREFIX}{split}"
    if mask_source != DECODER_SOURCE:
        name += "-" + mask_source.replace(":", "")
    return Path(checkpoint).parent / name


def eval_card(
    result: EvalResult, cfg: Config, split: str, checkpoint: str | Path, device: torch.device, precision: str
) -> dict:
    """Everything needed to read or reproduce the numbers: data, resolutions, protocol, code, weights."""
    size = cfg.data.image_size
    num_scored = result.num_scored()
    return {
        "dataset": cfg.data.name,
        "data_root": str(cfg.data.root),
        "split": split,
        "num_images": result.num_images + result.num_skipped,
        "num_evaluated": result.num_images,
        "num_skipped_corrupt": result.num_skipped,
        "num_scored": num_scored,
        "num_unscored": {name: result.num_images - count for name, count in num_scored.items()},
        "input_resolution": [size, size],
        "input_transform": "largest centred square, bilinear antialiased resize; masks nearest-exact",
        "mask_resolution": list(result.mask_size) if result.mask_size else None,
        "mask_source": result.mask_source,
        "mask_upsampling": "bilinear (align_corners=False) from the token grid, then argmax over slots",
        "ground_truth": (
            f"instance ids; id {IGNORE_ID} is ignored (it belongs to no ground-truth segment but predicted masks "
            "still cover it in IoU unions); an image with no ground-truth pixel has no score and is left out of "
            "the mean"
        ),
        "background": "segment 0 counts as a segment in ARI, mBO and mIoU and is left out in ARI-FG",
        "matching": {
            "mbo": "best IoU over predicted masks for each ground-truth segment, averaged over segments",
            "miou": "one-to-one Hungarian matching maximising total IoU (scipy linear_sum_assignment); "
            "unmatched segments count 0",
        },
        "aggregation": "mean over images with a score, per metric",
        "baselines": {
            "what": {name: BASELINE_TITLES[name] for name in result.baselines},
            "protocol": "the model's number of slots and token grid, the same images, upsampling and metrics; "
            f"Voronoi points and k-means (k-means++ seeding, best of {KMEANS_RESTARTS}) seeded with the eval seed",
        },
        "checkpoint": str(Path(checkpoint).resolve()),
        "checkpoint_sha256": file_sha256(checkpoint),
        "dias_version": __version__,
        "seed": result.seed,
        "device": str(device),
        "precision": precision,  # the one the forward ran in (after any fallback of eval.precision)
        "torch_version": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_eval(
    checkpoint: str | Path,
    *,
    config: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    out_dir: str | Path | None = None,
    viz: int = 0,
    split: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a split; write OUT/metrics.json, OUT/config.yaml and, with viz > 0, the report.

    Returns the metrics.json content {"metrics": {...}, "card": {...}, "path": str}.
    """
    model, cfg = load_model(checkpoint, config=config, overrides=overrides)
    split = split or cfg.data.val_split
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(checkpoint, split, cfg.eval.mask_source)
    require_folder(out_dir)  # before the evaluation, not after it
    parse_mask_source(cfg.eval.mask_source)
    device = resolve_device(cfg.eval.device, key="eval.device")
    precision = resolve_precision(cfg.eval.precision, device, key="eval.precision")
    loader = _split_loader(cfg, split, device)
    collector = VizCollector(viz, cfg.eval.mask_source) if viz > 0 else None
    result = evaluate(
        model,
        loader,
        mask_source=cfg.eval.mask_source,
        seed=cfg.eval.seed,
        device=device,
        progress=progress,
        precision=precision.name,
        on_batch=collector,
    )
    report = {
        "metrics": _json_means(result.means()),
        "baselines": {name: _json_means(means) for name, means in result.baseline_means().items()},
        "card": eval_card(result, cfg, split, checkpoint, device, precision.name),
    }
    path = out_dir / METRICS_FILE_NAME
    atomic_write_bytes(path, (json.dumps(report, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    save_config(cfg, out_dir / CONFIG_FILE_NAME)
    if collector is not None:
        per_image = {
            int(index): {n: float(result.scores[n][i]) for n in METRIC_NAMES} for i, index in enumerate(result.indices)
        }
        write_visual_report(out_dir, collector.items, report, per_image)
    log.info("wrote %s", path)
    return {**report, "path": str(path)}


def _split_loader(cfg: Config, split: str, device: torch.device) -> DataLoader:
    """The split in order, at the model's input size; with data.features, the cached tokens beside each image."""
    dataset = LmdbDataset(
        split_path(cfg.data.root, split), EvalTransform(cfg.data.image_size), skip_corrupt=cfg.data.skip_corrupt
    )
    if cfg.data.features is not None:  # tokens from `dias features`; images and masks still come from the split
        dataset = open_feature_split(cfg, split, train=False, source=dataset)
    return DataLoader(
        dataset,
        batch_size=cfg.eval.batch_size,
        num_workers=cfg.data.num_workers,
        shuffle=False,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )


def _json_means(means: dict[str, float]) -> dict[str, float | None]:
    return {name: (None if np.isnan(value) else value) for name, value in means.items()}


def format_metrics(
    metrics: dict[str, float | None], baselines: dict[str, dict[str, float | None]] | None = None
) -> str:
    """A Markdown table of the metrics, x100 with one decimal ("–" where no image had a score).

    With `baselines`, one row for the model and one per baseline below it: report.html's table.
    """
    return to_markdown(scores_table(metrics, baselines))
