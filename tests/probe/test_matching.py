"""Matching slots to objects on hand-made cases, the official two-column cap, boxes after crop and flip."""

import pytest
import torch

from dias.data.transforms import crop
from dias.probe.matching import box_from_mask, box_iou, match_slots, segment_iou


def _objects(*boxes: tuple[int, int, int, int], size: int = 10) -> torch.Tensor:
    """(M, size, size) bool masks, one per (top, left, bottom, right) box."""
    masks = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    for i, (top, left, bottom, right) in enumerate(boxes):
        masks[i, top:bottom, left:right] = True
    return masks


def test_segment_iou_of_a_label_map_and_objects():
    labels = torch.zeros(10, 10, dtype=torch.long)
    labels[:5] = 1  # slot 1: the top half; slot 0: the bottom half; slot 2: no pixel
    objects = _objects((0, 0, 5, 10), (0, 0, 5, 5))
    iou = segment_iou(labels, objects, num_slots=3)
    assert iou.shape == (3, 2) and iou.dtype == torch.float64
    torch.testing.assert_close(iou[1], torch.tensor([1.0, 0.5], dtype=torch.float64))
    assert iou[0].tolist() == [0.0, 0.0] and iou[2].tolist() == [0.0, 0.0]  # an empty segment: IoU 0


def test_more_objects_than_slots_leaves_the_worst_unmatched():
    iou = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.8, 0.6]], dtype=torch.float64)  # K = 2, M = 3
    assert match_slots(iou) == [(0, 0), (1, 1)]


def test_fewer_objects_than_slots_leaves_slots_unused():
    iou = torch.tensor([[0.3], [0.7], [0.2], [0.0]], dtype=torch.float64)
    assert match_slots(iou) == [(1, 0)]


def test_the_assignment_maximises_the_total_not_each_object_greedily():
    iou = torch.tensor([[0.6, 0.5], [0.55, 0.0]], dtype=torch.float64)  # greedy would take (0, 0) and leave 1
    assert match_slots(iou) == [(1, 0), (0, 1)]


def test_a_tie_gives_one_pair_deterministically():
    iou = torch.tensor([[0.5], [0.5]], dtype=torch.float64)
    pairs = match_slots(iou)
    assert len(pairs) == 1 and pairs == match_slots(iou.clone())


def test_iou_exactly_at_the_threshold_is_not_a_match_and_empty_objects_never_are():
    iou = torch.tensor([[0.1, 0.0], [0.0, 0.1000001]], dtype=torch.float64)
    assert match_slots(iou, threshold=0.1) == [(1, 1)]
    labels = torch.zeros(10, 10, dtype=torch.long)
    empty = torch.zeros(1, 10, 10, dtype=torch.bool)
    assert match_slots(segment_iou(labels, empty, num_slots=2)) == []
    assert match_slots(torch.zeros(3, 0, dtype=torch.float64)) == []


def test_the_official_cap_keeps_only_objects_zero_and_one():
    iou = torch.eye(4, dtype=torch.float64) * 0.9  # every object has its own perfect slot
    assert match_slots(iou) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert match_slots(iou, official_cap=True) == [(0, 0), (1, 1)]
    shifted = torch.tensor([[0.0, 0.0, 0.9], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert match_slots(shifted, official_cap=True) == []  # object 2's match is dropped, whatever its IoU


def test_boxes_are_recomputed_from_the_augmented_mask():
    mask = torch.zeros(10, 20, dtype=torch.long)
    mask[2:5, 4:8] = 1  # rows 2..4, columns 4..7
    torch.testing.assert_close(box_from_mask(mask == 1), torch.tensor([4 / 20, 2 / 10, 8 / 20, 5 / 10]))
    cropped = crop({"image": torch.zeros(3, 10, 20), "mask": mask}, (1, 2, 8, 10))["mask"]  # top 1, left 2, 8 x 10
    torch.testing.assert_close(box_from_mask(cropped == 1), torch.tensor([2 / 10, 1 / 8, 6 / 10, 4 / 8]))
    flipped = cropped.flip(-1)  # the horizontal flip: left' = 1 - right
    torch.testing.assert_close(box_from_mask(flipped == 1), torch.tensor([4 / 10, 1 / 8, 8 / 10, 4 / 8]))
    with pytest.raises(ValueError, match="empty mask"):
        box_from_mask(torch.zeros(4, 4, dtype=torch.bool))


def test_box_iou():
    a = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.2, 0.6]])
    b = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 1.0], [0.2, 0.2, 0.2, 0.6]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([1.0, 0.5, 0.0]))
