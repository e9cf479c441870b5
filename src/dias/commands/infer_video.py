"""`dias infer` with a video checkpoint: each input is one clip, a folder of frames (sorted by name) or a video file.

    summary = run_infer_clips(dias.load("runs/randsfq/last.pt"), ["frames/", "walk.mp4"], "masks/")

Per clip, in OUT/CLIP/: every frame's outputs as for images (FRAME_mask.png, FRAME_overlay.png, FRAME_slots.npz),
then `track.npz` (`masks` (T, H, W) uint8, the slot index per pixel over time) and `track.png` (the overlays side
by side). A slot keeps its index, and so its colour, in every frame: a colour that stays on an object is one
identity over time. Video files need PyAV, the optional extra `video` (pip install "dias[video]"). A conditional
model starts from each object's box in the first frame: pass a boxes file (dias.commands.clip_boxes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dias.commands.clip_boxes import BOX_FILE_FORMAT, ClipBoxes, first_frame_boxes, read_clip_boxes
from dias.commands.infer import (
    IMAGE_SUFFIXES,
    SUMMARY_FILE,
    Segmenter,
    SegmentResult,
    _npz_bytes,
    _save_png,
    _unique_stem,
    _write_outputs,
)
from dias.data.images import read_image
from dias.data.videos import INSTALL_VIDEO_EXTRA, decode_video
from dias.errors import MissingFileError, MissingPackageError, UsageError
from dias.io import atomic_write_bytes, require_folder
from dias.viz.panels import overlay, to_pil

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
TRACK_FILE, TRACK_PICTURE = "track.npz", "track.png"
VIDEO_EXTRA = f"reading video files needs PyAV: {INSTALL_VIDEO_EXTRA} (or pass a folder of frames)"


def read_video(path: str | Path) -> list[torch.Tensor]:
    """The frames of a video file, each (3, H, W) uint8 RGB, in time order (PyAV; the extra `video`)."""
    try:
        frames = decode_video(Path(path))
    except MissingPackageError:
        raise UsageError(f"{path}: {VIDEO_EXTRA}") from None
    return [torch.from_numpy(frame).permute(2, 0, 1) for frame in frames]


def read_clip(item: Path, out_dir: Path) -> tuple[list[Path] | None, list[torch.Tensor]]:
    """(frame files or None for a video file, frames (3, H, W) uint8) of one input."""
    if item.is_dir():
        paths = sorted(
            (
                p
                for p in item.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.resolve().is_relative_to(out_dir)
            ),
            key=lambda p: p.name,
        )
        if not paths:
            raise MissingFileError(f"no frames in {item}: a clip folder holds image files ending in {IMAGE_SUFFIXES}")
        try:
            return paths, [read_image(p) for p in paths]
        except ValueError as exc:  # one unreadable frame would shift every later frame in time
            raise UsageError(f"clip {item}: {exc}; remove or replace that frame") from None
    if item.suffix.lower() in VIDEO_SUFFIXES:
        return None, read_video(item)
    raise UsageError(
        f"{item}: a video checkpoint segments clips; pass a folder of frames or a video file "
        f"({', '.join(VIDEO_SUFFIXES)})"
    )


def run_infer_clips(
    segmenter: Segmenter,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    boxes: str | Path | None = None,
    slot_masks: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Segment each input as one clip; write per-frame outputs and the clip's track; returns summary.json's content.

    A conditional model (it starts from first-frame boxes) needs `boxes`, a JSON file with each clip's boxes
    (dias.commands.clip_boxes); an unconditional one refuses it. Every file is checked before any clip runs.
    """
    clip_boxes = _read_boxes(segmenter, boxes)
    out_dir = Path(out_dir)
    require_folder(out_dir)
    resolved = out_dir.resolve()
    clips, stems = [], set()
    for item in map(Path, inputs):
        if not item.exists():
            raise MissingFileError(f"input not found: {item}")
        if item.resolve().is_relative_to(resolved):
            raise UsageError(f"input {item} is inside the output folder {out_dir}; pass --out a folder outside it")
        clips.append((item, *read_clip(item, resolved)))
    first_boxes = [None] * len(clips)
    if clip_boxes is not None:
        names = [item.name for item, _, _ in clips]
        if len(set(names)) < len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise UsageError(f"the boxes file names clips by name, and two inputs are named {twice[0]!r}: rename one")
        first_boxes = [first_frame_boxes(clip_boxes, item.name, *frames[0].shape[-2:]) for item, _, frames in clips]
    done = []
    for (item, paths, frames), clip_first_boxes in zip(clips, first_boxes, strict=True):
        boxes_array = None if clip_first_boxes is None else np.asarray(clip_first_boxes, np.float32).reshape(-1, 4)
        result = segmenter.segment_clip(frames, boxes=boxes_array, seed=seed)
        clip_stem = _unique_stem(item, stems)
        folder = out_dir / clip_stem
        folder.mkdir(parents=True, exist_ok=True)
        frame_result = SegmentResult(result.masks, result.slots, result.attn[None], result.decoder_attn, None)
        names = [p if paths else Path(f"frame{t:05d}.png") for t, p in enumerate(paths or frames)]
        frame_stems: set[str] = set()
        written = [
            _write_outputs(folder, _unique_stem(name, frame_stems), name, frames[t], frame_result, t, slot_masks)
            for t, name in enumerate(names)
        ]
        track = torch.stack(result.masks).numpy().astype(np.uint8)  # (T, H, W)
        atomic_write_bytes(folder / TRACK_FILE, _npz_bytes(masks=track))
        strip = torch.cat([overlay(frame, labels) for frame, labels in zip(frames, result.masks, strict=True)], dim=-1)
        _save_png(to_pil(strip), folder / TRACK_PICTURE)
        areas = np.stack([frame["slot_areas"] for frame in written])  # (T, K)
        done.append(
            {
                "input": str(item),
                "output": clip_stem,
                "num_frames": len(frames),
                "frames": written,
                "slot_frames": (areas > 0).sum(0).tolist(),  # frames in which each slot owns a pixel
            }
            | ({} if clip_first_boxes is None else {"first_frame_boxes": clip_first_boxes})
        )
    summary = {
        "num_clips": len(done),
        "num_images": sum(clip["num_frames"] for clip in done),
        "num_skipped": 0,
        "num_slots": segmenter.cfg.model.num_slots,
        "image_size": segmenter.cfg.data.image_size,
        "mask_ids": "slot index per pixel (0..K-1) at the frame's resolution; a slot keeps its index over time",
        "seed": seed,
        "clips": done,
        "skipped": [],
    }
    atomic_write_bytes(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2).encode("utf-8"))
    return summary


def _read_boxes(segmenter: Segmenter, boxes: str | Path | None) -> ClipBoxes | None:
    """The boxes file a conditional model needs, None for an unconditional one; refused otherwise."""
    if not segmenter.model.conditional:
        if boxes is not None:
            raise UsageError("this video model is not conditional: it reads no boxes; drop --boxes")
        return None
    if boxes is None:
        raise UsageError(
            "this video model is conditional: it starts from each object's box in the first frame; pass --boxes "
            f"FILE, a JSON file {BOX_FILE_FORMAT}"
        )
    return read_clip_boxes(boxes, segmenter.cfg.model.num_slots)


__all__ = ["VIDEO_EXTRA", "read_video", "run_infer_clips"]
