import pytest
import torch

from dias.baselines import (
    BASELINE_NAMES,
    baseline_masks,
    grid_partition,
    kmeans,
    video_baseline_masks,
    voronoi_partition,
)
from dias.metrics import ari


def test_grid_has_exactly_k_near_equal_cells():
    for k in range(1, 12):
        masks = grid_partition(k, (16, 16))
        assert masks.shape == (k, 16, 16)
        assert torch.equal(masks.sum(dim=0), torch.ones(16, 16))  # a partition
        areas = masks.sum(dim=(1, 2))
        assert (areas > 0).all()
        assert areas.max() / areas.min() <= 2.0


def test_grid_of_four_is_two_by_two_blocks():
    labels = grid_partition(4, (4, 4)).argmax(dim=0)
    expected = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    assert torch.equal(labels, expected)


def test_voronoi_assigns_each_token_to_its_nearest_point_and_follows_the_seed():
    masks = voronoi_partition(7, (16, 16), seed=3)
    assert masks.shape == (7, 16, 16) and torch.equal(masks.sum(dim=0), torch.ones(16, 16))
    assert torch.equal(masks, voronoi_partition(7, (16, 16), seed=3))
    assert not torch.equal(masks, voronoi_partition(7, (16, 16), seed=4))
    points = torch.rand(7, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y, x = 2 / 16 + 0.5 / 16, 9 / 16 + 0.5 / 16  # token (2, 9)
    nearest = ((points - torch.tensor([y, x], dtype=torch.float64)) ** 2).sum(dim=1).argmin()
    assert masks[:, 2, 9].argmax() == nearest


def test_kmeans_recovers_separated_clusters_per_image():
    generator = torch.Generator().manual_seed(0)
    truth = torch.randint(5, (3, 64), generator=generator)
    centres = torch.randn(3, 5, 8, generator=generator) * 10
    tokens = centres.gather(1, truth[..., None].expand(-1, -1, 8)) + 0.1 * torch.randn(3, 64, 8, generator=generator)
    labels = kmeans(tokens, 5, seed=0)
    assert labels.shape == (3, 64)
    assert torch.allclose(ari(labels, truth), torch.ones(3, dtype=torch.float64))
    assert torch.equal(labels, kmeans(tokens, 5, seed=0))  # deterministic for a seed


def test_kmeans_on_identical_tokens_does_not_fail():
    labels = kmeans(torch.ones(2, 16, 4), 3, seed=0)
    assert labels.shape == (2, 16)


def test_baseline_masks_are_one_hot_on_the_grid_and_blind_ones_ignore_the_image():
    tokens = torch.randn(2, 36, 8)
    for name in BASELINE_NAMES:
        masks = baseline_masks(name, tokens, num_slots=4, grid_size=(6, 6))
        assert masks.shape == (2, 4, 6, 6)
        assert torch.equal(masks.sum(dim=1), torch.ones(2, 6, 6))
    for name in ("grid", "voronoi"):
        first = baseline_masks(name, tokens, num_slots=4, grid_size=(6, 6))
        assert torch.equal(first, baseline_masks(name, -tokens, num_slots=4, grid_size=(6, 6)))
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_masks("random", tokens, num_slots=4, grid_size=(6, 6))
    with pytest.raises(ValueError, match="grid does not hold"):
        baseline_masks("grid", tokens, num_slots=4, grid_size=(5, 5))


def test_kmeans_runs_in_float32_under_autocast():
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 64, 8, generator=generator) * 50 + 1000  # large values: bf16 sums would round
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = kmeans(tokens, 5, seed=0)
    assert torch.equal(under_autocast, kmeans(tokens, 5, seed=0))


def test_video_baselines_are_one_hot_per_frame_and_blind_ones_are_constant_over_time():
    tokens = torch.randn(2, 3, 36, 8)  # (B, T, N, C)
    for name in BASELINE_NAMES:
        masks = video_baseline_masks(name, tokens, num_slots=4, grid_size=(6, 6))
        assert masks.shape == (2, 3, 4, 6, 6)
        assert torch.equal(masks.sum(dim=2), torch.ones(2, 3, 6, 6))
    for name in ("grid", "voronoi"):
        masks = video_baseline_masks(name, tokens, num_slots=4, grid_size=(6, 6))
        image = baseline_masks(name, tokens[:, 0], num_slots=4, grid_size=(6, 6))
        assert torch.equal(masks, image[:, None].expand(-1, 3, -1, -1, -1))
    with pytest.raises(ValueError, match=r"\(B, T, N, C\)"):
        video_baseline_masks("grid", tokens[0], num_slots=4, grid_size=(6, 6))


def test_video_kmeans_finds_each_frames_clusters_with_ids_redrawn_per_frame():
    generator = torch.Generator().manual_seed(0)
    truth = torch.randint(4, (64,), generator=generator)
    centres = torch.randn(4, 8, generator=generator) * 10
    frame = centres[truth] + 0.1 * torch.randn(64, 8, generator=generator)
    tokens = frame.expand(1, 8, 64, 8)  # (B, T, N, C): one frame, eight times
    labels = video_baseline_masks("kmeans", tokens, num_slots=4, grid_size=(8, 8)).argmax(dim=2).flatten(2)
    assert torch.allclose(ari(labels[0], truth.expand(8, -1)), torch.ones(8, dtype=torch.float64))
    assert not all(torch.equal(labels[0, 0], labels[0, t]) for t in range(1, 8))  # no identity across frames
