import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from dias.modules.redundancy import complete_linkage, cosine_distance, merge_clusters, merge_redundant_slots


def _canonical(labels):
    """Cluster ids renamed to the lowest member index, for comparing partitions."""
    labels = np.asarray(labels)
    return np.array([np.flatnonzero(labels == labels[i]).min() for i in range(len(labels))])


def test_complete_linkage_equals_scipy_on_random_cases():
    generator = torch.Generator().manual_seed(0)
    for trial in range(200):
        k = 2 + trial % 10
        x = torch.randn(4, k, 3 + trial % 5, generator=generator)
        distance = cosine_distance(x)
        threshold = float(torch.empty(1).uniform_(0.1, 1.5, generator=generator))
        ours = complete_linkage(distance, threshold)
        for b in range(4):
            d = distance[b].double().numpy()
            d = (d + d.T) / 2
            np.fill_diagonal(d, 0)
            tree = linkage(squareform(d, checks=False), method="complete")
            # scipy keeps merges with height <= t; ours merges strictly below the threshold.
            expected = fcluster(tree, t=np.nextafter(threshold, 0), criterion="distance")
            np.testing.assert_array_equal(ours[b].numpy(), _canonical(expected))


def test_duplicates_are_merged_to_their_mean_and_pruned():
    a, b = torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0])
    slots = torch.stack([a, b, a * 2, b + 0.01, torch.tensor([0, 0, 1.0])])[None]  # (1, 5, 3)
    merged = merge_redundant_slots(slots, threshold=0.05)
    assert merged.keep.tolist() == [[True, True, False, False, True]]
    assert merged.labels.tolist() == [[0, 1, 0, 1, 4]]
    torch.testing.assert_close(merged.slots[0, 0], (a + 2 * a) / 2)
    torch.testing.assert_close(merged.slots[0, 1], b + 0.005)
    assert torch.equal(merged.slots[0, 2], torch.zeros(3)) and torch.equal(merged.slots[0, 3], torch.zeros(3))


def test_min_clusters_keeps_every_slot():
    slots = torch.ones(1, 4, 8) + 1e-3 * torch.randn(1, 4, 8)
    assert merge_redundant_slots(slots, threshold=0.5).keep.sum() == 1
    kept = merge_redundant_slots(slots, threshold=0.5, min_clusters=3)
    assert kept.keep.all() and torch.equal(kept.slots, slots)


def test_attention_overlap_variant():
    slots = torch.randn(1, 3, 4)  # unrelated vectors
    attn = torch.tensor([[[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]]])  # slots 0 and 1 cover the same tokens
    merged = merge_redundant_slots(slots, threshold=0.1, attn=attn)
    assert merged.keep.tolist() == [[True, False, True]]


def test_invalid_slots_never_merge():
    slots = torch.ones(1, 3, 4)
    valid = torch.tensor([[True, False, True]])
    merged = merge_redundant_slots(slots, threshold=0.5, valid=valid)
    assert merged.keep.tolist() == [[True, False, False]]
    assert merged.labels.tolist() == [[0, 1, 0]]


def test_gradient_flows_through_the_mean_not_the_decision():
    slots = torch.tensor([[[1.0, 0.0], [1.0, 0.001], [0.0, 1.0]]], requires_grad=True)
    merged = merge_redundant_slots(slots, threshold=0.01)
    merged.slots.sum().backward()
    # Slots 0 and 1 share one mean: each contributes half of it, slot 2 is its own cluster.
    torch.testing.assert_close(slots.grad, torch.tensor([[[0.5, 0.5], [0.5, 0.5], [1.0, 1.0]]]))
    assert not merged.labels.requires_grad and not merged.keep.requires_grad


@pytest.mark.parametrize("k", [1, 2, 7])
def test_shapes(k):
    merged = merge_clusters(torch.randn(3, k, 5), torch.arange(k).expand(3, k))
    assert merged.slots.shape == (3, k, 5) and merged.keep.shape == (3, k) and merged.keep.all()
