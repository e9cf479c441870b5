"""`dias eval`: score a checkpoint's masks on a split (the protocol is dias.train.validate.evaluate) and
write an eval card.

    run_eval("runs/demo/last.pt", out_dir="runs/demo/eval-val")  # writes metrics.json and config.yaml
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dias.baselines import BASELINE_TITLES, KMEANS_RESTARTS
from dias.config import CONFIG_FILE_NAME, save_config
from dias.data.clip_dataset import collate_clips
from dias.data.codec import IGNORE_ID
from dias.data.dataset import LmdbDataset, collate
from dias.data.records import split_path, warn_if_other_dataset
from dias.data.transforms import EvalTransform
from dias.errors import UsageError
from dias.io import atomic_write_bytes, file_sha256, require_folder
from dias.methods.base import SlotModel
from dias.metrics import METRIC_NAMES
from dias.runtime.device import resolve_device, resolve_precision
from dias.schema import DECODER_SOURCE, Config, is_video, parse_mask_source
from dias.train.checkpoint import load_model
from dias.train.features import open_feature_split
from dias.train.loaders import clip_split
from dias.train.validate import EvalResult, evaluate
from dias.version import __version__
from dias.video_metrics import VIDEO_CONVENTION_PREFIXES, VIDEO_CONVENTION_TITLES
from dias.viz.clips import ClipCollector, video_scores_table, write_clip_report
from dias.viz.gallery import VizCollector, scores_table, write_visual_report
from dias.viz.tables import to_markdown

log = logging.getLogger(__name__)

METRICS_FILE_NAME = "metrics.json"
EVAL_DIR_PREFIX = "eval-"


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
        "method": cfg.model.method.name,
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
    } | (_video_card(result, cfg) if result.clip_frames else {})


def _video_card(result: EvalResult, cfg: Config) -> dict:
    """What a video score depends on beyond an image score's: the clips' length and the conventions' meaning."""
    return {
        "num_clips": result.num_images,
        "eval_clip_length": cfg.data.eval_clip_length,  # frames per scored clip; None: whole videos
        "clip_frames": list(result.clip_frames),  # the frame counts the scored clips had
        "conventions": {
            "": VIDEO_CONVENTION_TITLES["video"],
            "videosaur/": VIDEO_CONVENTION_TITLES["videosaur"],
            "frame/": VIDEO_CONVENTION_TITLES["frame"] + "; per clip, then over clips",
        },
        "ground_truth": (
            f"instance ids kept across frames, one track per object; id {IGNORE_ID} is ignored; a clip with no "
            "ground-truth pixel has no score"
        ),
        "background": "the video convention counts the background track in ARI, mBO and mIoU and leaves it out "
        "in ARI-FG; videosaur/ leaves it out of both",
        "aggregation": "mean over clips with a score, per metric",
        "baselines_over_time": "grid and Voronoi cells constant over time; k-means per frame (no identity)",
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
    report_sections: tuple[str, ...] = (),
    loaded: tuple[SlotModel, Config] | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a split; write OUT/metrics.json, OUT/config.yaml and, with viz > 0, the report
    (with `report_sections`, HTML blocks, after its figures).

    `loaded` is the checkpoint's model and config, already loaded (load_model with the overrides wanted), for a
    caller that used them before; `checkpoint` is then only named in the card, and `config` and `overrides`
    must be left out. Returns the metrics.json content {"metrics": {...}, "card": {...}, "path": str}.
    """
    if loaded is not None and (config is not None or overrides):
        raise UsageError("run_eval: pass the config and overrides to load_model when passing `loaded`, not here")
    model, cfg = loaded if loaded is not None else load_model(checkpoint, config=config, overrides=overrides)
    split = split or cfg.data.val_split
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(checkpoint, split, cfg.eval.mask_source)
    require_folder(out_dir)  # before the evaluation, not after it
    parse_mask_source(cfg.eval.mask_source)
    device = resolve_device(cfg.eval.device, key="eval.device")
    precision = resolve_precision(cfg.eval.precision, device, key="eval.precision")
    loader = _split_loader(cfg, split, device)
    video = is_video(cfg.data.name)
    collector = (ClipCollector if video else VizCollector)(viz, cfg.eval.mask_source) if viz > 0 else None
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
    if isinstance(collector, ClipCollector):  # clips of one video share its index: keyed by row
        per_clip = {i: {n: float(result.scores[n][i]) for n in METRIC_NAMES} for i in range(result.num_images)}
        write_clip_report(out_dir, collector.items, report, per_clip, sections=report_sections)
    elif collector is not None:
        per_image = {
            int(index): {n: float(result.scores[n][i]) for n in METRIC_NAMES} for i, index in enumerate(result.indices)
        }
        write_visual_report(out_dir, collector.items, report, per_image, sections=report_sections)
    log.info("wrote %s", path)
    return {**report, "path": str(path)}


def _split_loader(cfg: Config, split: str, device: torch.device) -> DataLoader:
    """The split in order, at the model's input size; with data.features, the cached tokens beside each image;
    a video split's clips (windows of data.eval_clip_length, or whole videos)."""
    if is_video(cfg.data.name):
        return DataLoader(
            clip_split(cfg, split, train=False),
            batch_size=cfg.eval.batch_size,
            num_workers=cfg.data.num_workers,
            shuffle=False,
            collate_fn=collate_clips,
            pin_memory=device.type == "cuda",
        )
    dataset = LmdbDataset(
        split_path(cfg.data.root, split), EvalTransform(cfg.data.image_size), skip_corrupt=cfg.data.skip_corrupt
    )
    warn_if_other_dataset(dataset.header, cfg.data.name, dataset.path)
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

    With `baselines`, one row for the model and one per baseline below it: report.html's table. A video run's
    metrics (the VideoSAUR and per-frame conventions beside the official one) get one labelled block each.
    """
    video = any(key.startswith(VIDEO_CONVENTION_PREFIXES["videosaur"]) for key in metrics)
    return to_markdown((video_scores_table if video else scores_table)(metrics, baselines))
