"""What a probe trains on: the vectors matched to each image's objects, and those objects' labels.

    matched = match_batch(out, batch, sources=("model", "grid", "kmeans"), ...)
    matched["model"].vectors   # (P, D) the slots matched to P objects of the batch
    matched["grid"].vectors    # (P', C) backbone tokens mean-pooled in the image-blind grid's cells

A source is what the "slots" are: the model's own slots with its masks (`mask_source`), or the frozen
backbone tokens mean-pooled inside the segments of a baseline that learns nothing (dias.baselines: the
fixed grid, per-image k-means), matched to the objects by the same rule (dias.probe.matching).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from dias.baselines import baseline_masks
from dias.masks import masks_from_attention, select_masks
from dias.metrics import BACKGROUND_ID, IGNORE_ID
from dias.probe.labels import object_classes
from dias.probe.matching import box_from_mask, match_slots, segment_iou

MODEL_SOURCE = "model"


class Matched(NamedTuple):
    vectors: torch.Tensor  # (P, D) one vector per matched object
    classes: torch.Tensor  # (P,) long, the object's class
    boxes: torch.Tensor  # (P, 4) the object's box in the augmented image: left, top, right, bottom in [0, 1]


def source_segments(out: Any, source: str, *, mask_source: str, grid: tuple[int, int], seed: int):
    """(segment weights (B, K, N), vectors (B, K, D)) of one source for a model output."""
    if source == MODEL_SOURCE:
        return select_masks(decoder_attn=out.decoder_attn, attn=out.attn, mask_source=mask_source), out.slots
    features = out.features.float()  # (B, N, C)
    segments = baseline_masks(source, features, num_slots=out.slots.shape[1], grid_size=grid, seed=seed)
    segments = segments.flatten(2).float()  # (B, K, N) hard 0/1
    pooled = segments @ features / segments.sum(-1, keepdim=True).clamp_min(1)  # mean token per segment
    return segments, pooled


def match_batch(
    out: Any,
    batch: dict[str, Any],
    *,
    sources: tuple[str, ...],
    dataset: str,
    attribute: str,
    vocabulary: tuple[str, ...],
    mask_source: str,
    grid: tuple[int, int],
    iou_threshold: float,
    official_cap: bool,
    seed: int = 0,
) -> dict[str, Matched]:
    """Each source's matched vectors, classes and boxes over a batch (images, instance masks, metas)."""
    masks = batch["mask"]  # (B, H, W) instance ids
    size = tuple(masks.shape[-2:])
    objects_per_image = [objects_of(mask) for mask in masks]
    classes_per_image = [object_classes(meta, dataset, attribute, vocabulary=vocabulary) for meta in batch["meta"]]
    matched = {}
    for source in sources:
        segments, vectors = source_segments(out, source, mask_source=mask_source, grid=grid, seed=seed)
        labels = masks_from_attention(segments.float(), size, grid)  # (B, H, W) slot per pixel
        picked, classes, boxes = [], [], []
        for b, (ids, objects) in enumerate(objects_per_image):
            iou = segment_iou(labels[b], objects, segments.shape[1])
            for slot, column in match_slots(iou, threshold=iou_threshold, official_cap=official_cap):
                picked.append(vectors[b, slot])
                classes.append(classes_per_image[b][int(ids[column]) - 1])  # object i has mask id i + 1
                boxes.append(box_from_mask(objects[column]))
        dim = vectors.shape[-1]
        matched[source] = Matched(
            torch.stack(picked).float() if picked else torch.zeros(0, dim),
            torch.tensor(classes, dtype=torch.long),
            torch.stack(boxes) if boxes else torch.zeros(0, 4),
        )
    return matched


def objects_of(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(object ids (M,) ascending, masks (M, ...) bool) of one instance mask (H, W), or a clip's (T, H, W);
    background and ignore left out."""
    ids = mask.unique()
    ids = ids[(ids != BACKGROUND_ID) & (ids != IGNORE_ID)]
    return ids, mask[None] == ids.view(-1, *[1] * mask.dim())
