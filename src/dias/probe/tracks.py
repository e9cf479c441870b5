"""What a probe trains on in a video: slot tracks matched to object tracks, one vector per visible frame.

    matched = match_clip_batch(out, batch, classes, sources=("model", "grid", "kmeans"), ...)
    matched["model"].vectors   # (P, D) slot k's vector in frame t, for every frame t where its object is visible

A track is one slot index over a clip (the model keeps slot k on one object through time) or one ground-truth
object id. Tracks are matched by the image rule (dias.probe.matching) applied to the space-time volume: the
IoU of slot k's pixels in all frames with object m's pixels in all frames, Hungarian, kept above the threshold.
A slot that swaps objects mid-clip overlaps each of them for part of the clip only, so it matches less.

Each matched pair then gives one training sample per frame where the object is visible: the slot's vector in
that frame, the object's class (constant over the clip) and its box in that frame. Per-frame vectors, not the
track's mean, because the box is a per-frame target and a mean vector cannot say where the object is in one
frame; the class is then scored per frame too, so a long track counts as often as it is seen.

The baselines' tracks: the grid's cells are the same in every frame (a track by construction); k-means runs
frame by frame, so its cluster k has no identity over time, as in the video scores (dias.baselines).
"""

from __future__ import annotations

from typing import Any

import torch

from dias.baselines import video_baseline_masks
from dias.masks import masks_from_attention
from dias.probe.labels import UNKNOWN_CLASS
from dias.probe.matching import box_from_mask, match_slots, segment_iou
from dias.probe.objects import MODEL_SOURCE, Matched, objects_of


def clip_segments(out: Any, source: str, *, mask_source: str, grid: tuple[int, int], seed: int):
    """(segment weights (B, T, K, N), vectors (B, T, K, D)) of one source for a video model's output."""
    if source == MODEL_SOURCE:
        return (out.decoder_attn if mask_source == "decoder" else out.attn), out.slots
    features = out.features.float()  # (B, T, N, C)
    segments = video_baseline_masks(source, features, num_slots=out.slots.shape[2], grid_size=grid, seed=seed)
    segments = segments.flatten(3).float()  # (B, T, K, N) hard 0/1
    pooled = segments @ features / segments.sum(-1, keepdim=True).clamp_min(1)  # mean token per segment and frame
    return segments, pooled


def match_clip_batch(
    out: Any,
    batch: dict[str, Any],
    classes: list[list[int]],
    *,
    sources: tuple[str, ...],
    mask_source: str,
    grid: tuple[int, int],
    iou_threshold: float,
    official_cap: bool,
    seed: int = 0,
) -> dict[str, Matched]:
    """Each source's matched per-frame vectors, classes and boxes over a batch of clips.

    classes: per clip, the class of objects 1..M (mask-id order), UNKNOWN_CLASS for an object without one
    (matched like any other, but no sample: it has no target).
    """
    masks = batch["masks"]  # (B, T, H, W) instance ids, stable over the clip
    num_clips, num_frames = masks.shape[:2]
    size = tuple(masks.shape[-2:])
    objects_per_clip = [objects_of(mask) for mask in masks]  # ids (M,), masks (M, T, H, W)
    matched = {}
    for source in sources:
        segments, vectors = clip_segments(out, source, mask_source=mask_source, grid=grid, seed=seed)
        num_slots = segments.shape[2]
        labels = masks_from_attention(segments.flatten(0, 1).float(), size, grid)  # (B·T, H, W) slot per pixel
        labels = labels.unflatten(0, (num_clips, num_frames))  # (B, T, H, W)
        picked, targets, boxes = [], [], []
        for b, (ids, objects) in enumerate(objects_per_clip):
            iou = segment_iou(labels[b], objects, num_slots)  # (K, M) over the space-time volume
            for slot, column in match_slots(iou, threshold=iou_threshold, official_cap=official_cap):
                target = classes[b][int(ids[column]) - 1]  # object i has mask id i + 1
                if target == UNKNOWN_CLASS:
                    continue
                for t in range(num_frames):
                    if objects[column, t].any():
                        picked.append(vectors[b, t, slot])
                        targets.append(target)
                        boxes.append(box_from_mask(objects[column, t]))
        dim = vectors.shape[-1]
        matched[source] = Matched(
            torch.stack(picked).float() if picked else torch.zeros(0, dim),
            torch.tensor(targets, dtype=torch.long),
            torch.stack(boxes) if boxes else torch.zeros(0, 4),
        )
    return matched
