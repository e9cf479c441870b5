"""The video metrics' conventions: tracks over the space-time volume, the background in or out, per frame."""

import pytest
import torch

from dias.metrics import contingency, nanmean, score
from dias.video_metrics import frame_score, score_all, video_score, videosaur_score

T, H, W = 4, 8, 8


def _clip() -> torch.Tensor:
    """gt (1,T,H,W): background 0, object 1 in the top-left quarter, object 2 in the bottom-right, every frame."""
    gt = torch.zeros(1, T, H, W, dtype=torch.long)
    gt[:, :, :4, :4] = 1
    gt[:, :, 4:, 4:] = 2
    return gt


def _ones(shape) -> torch.Tensor:
    return torch.ones(shape, dtype=torch.float64)


def test_a_perfect_prediction_scores_one_in_every_convention():
    gt = _clip()
    pred = (gt + 3) % 5  # other slot ids, the same tracks
    for convention, scores in score_all(pred, gt).items():
        for name, value in scores.items():
            assert value.dtype == torch.float64
            assert torch.allclose(value, _ones(value.shape)), (convention, name)
    assert frame_score(pred, gt)["ari"].shape == (1, T)


def test_a_slot_that_swaps_objects_mid_clip_lowers_video_scores_but_not_frame_scores():
    gt = _clip()
    pred = gt.clone()
    late = pred[:, T // 2 :]
    late[gt[:, T // 2 :] == 1], late[gt[:, T // 2 :] == 2] = 2, 1  # slots 1 and 2 trade objects at frame T/2
    for name, value in frame_score(pred, gt).items():
        assert torch.allclose(value, _ones((1, T))), name
    video = video_score(pred, gt)
    for name, value in (*video.items(), *videosaur_score(pred, gt).items()):
        assert float(value) < 1 - 1e-3, name
    # each slot covers half of one track and half of the other: IoU = 1/2 / (1 + 1 - 1/2) = 1/3 per object
    assert float(video["mbo"]) == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)
    assert float(videosaur_score(pred, gt)["mbo"]) == pytest.approx(1 / 3)


def test_the_background_is_a_track_in_video_mbo_and_miou_but_not_in_videosaur_mbo():
    gt = _clip()
    pred = gt.clone()
    pred[(gt == 0) & (torch.arange(W) < 4)] = 3  # the background split over slots 0 and 3
    video, videosaur = video_score(pred, gt), videosaur_score(pred, gt)
    assert float(videosaur["mbo"]) == pytest.approx(1.0)  # the objects are perfect
    assert float(video["mbo"]) == pytest.approx((1 + 1 + 0.5) / 3)  # the background's best IoU is 1/2
    assert float(video["miou"]) == pytest.approx((1 + 1 + 0.5) / 3)
    assert float(video["fg_ari"]) == pytest.approx(1.0) and float(videosaur["fg_ari"]) == pytest.approx(1.0)
    assert float(video["ari"]) < 1 - 1e-3  # ARI keeps the background pixels


def test_one_frame_clips_score_as_images_and_tables_are_float64():
    gt = torch.randint(0, 4, (3, 1, H, W))
    pred = torch.randint(0, 5, (3, 1, H, W))
    video, image = video_score(pred, gt), score(pred[:, 0], gt[:, 0])
    for name in image:
        assert torch.allclose(video[name], image[name], equal_nan=True), name
    table, _, pred_sizes = contingency(pred.flatten(1, 2), gt.flatten(1, 2))
    assert table.dtype == pred_sizes.dtype == torch.float64


def test_clips_and_frames_without_objects_are_nan_and_skipped():
    gt = _clip().repeat(2, 1, 1, 1)
    gt[1] = 0  # a clip of background only
    gt[0, 0] = 0  # a frame of background only
    pred = gt.clone()
    assert torch.isnan(video_score(pred, gt)["fg_ari"][1]) and torch.isnan(videosaur_score(pred, gt)["mbo"][1])
    frames = frame_score(pred, gt)["fg_ari"]
    assert torch.isnan(frames[0, 0]) and nanmean(frames) == pytest.approx(1.0)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\(B,T,H,W\)"):
        video_score(torch.zeros(2, H, W, dtype=torch.long), torch.zeros(2, H, W, dtype=torch.long))
    with pytest.raises(ValueError, match="integer labels"):
        video_score(torch.zeros(1, T, H, W), torch.zeros(1, T, H, W, dtype=torch.long))
