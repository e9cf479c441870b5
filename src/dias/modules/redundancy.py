"""Redundant-slot detection and merging (the paper's method, step (a)); no parameters.

Per sample, slots are clustered by complete-linkage agglomerative clustering on a distance matrix,
merging while the closest pair of clusters is nearer than `threshold` (sklearn's `distance_threshold`
rule; with complete linkage every pair inside a cluster is then nearer than it). Each cluster is
replaced by its mean, kept once at its lowest slot index; the other members are pruned (zeroed, and
`keep` is False for them).

Two distances are offered: cosine distance between slot vectors (the group's code, the default) and
cosine distance between the slots' attention maps (attention overlap). The clustering decision carries
no gradient; the merge is a mean, through which gradients flow.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class MergedSlots(NamedTuple):
    slots: torch.Tensor  # (B, K, D) cluster means at kept positions, zeros at pruned ones
    keep: torch.Tensor  # (B, K) bool: True for the one representative (lowest index) of each cluster
    labels: torch.Tensor  # (B, K) long: cluster id of each slot = index of its representative


def cosine_distance(x: torch.Tensor) -> torch.Tensor:
    """(B, K, X) -> (B, K, K) pairwise 1 - cosine similarity, in [0, 2], float32."""
    x = F.normalize(x.float(), dim=-1)
    return (1 - x @ x.transpose(1, 2)).clamp(0, 2)


@torch.no_grad()
def complete_linkage(distance: torch.Tensor, threshold: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Cluster labels (B, K) long, each the lowest slot index of its cluster; vectorised over the batch.

    distance (B, K, K) symmetric; valid (B, K) bool leaves invalid slots as singletons that never merge.
    Greedy merging of the closest pair under complete linkage has no inversions, so stopping at the first
    distance >= threshold equals cutting the dendrogram there.
    """
    b, k, _ = distance.shape
    inf = torch.tensor(float("inf"), device=distance.device)
    linkage = distance.double().clone()
    linkage.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    if valid is not None:
        pair_valid = valid[:, :, None] & valid[:, None, :]
        linkage = torch.where(pair_valid, linkage, inf)
    labels = torch.arange(k, device=distance.device).expand(b, k).clone()
    rows = torch.arange(b, device=distance.device)
    for _ in range(k - 1):
        nearest, flat = linkage.flatten(1).min(dim=1)  # (B,)
        merging = nearest < threshold
        if not merging.any():
            break
        i, j = flat // k, flat % k
        root, gone = torch.minimum(i, j), torch.maximum(i, j)
        # Complete linkage: the merged cluster's distance to any other is the larger of the two.
        merged = torch.maximum(linkage[rows, root], linkage[rows, gone])  # (B, K)
        merged[rows, root] = float("inf")
        new = linkage.clone()
        new[rows, root] = merged
        new[rows, :, root] = merged
        new[rows, gone] = float("inf")
        new[rows, :, gone] = float("inf")
        linkage = torch.where(merging[:, None, None], new, linkage)
        relabel = merging[:, None] & (labels == gone[:, None])
        labels = torch.where(relabel, root[:, None].expand_as(labels), labels)
    return labels


def merge_clusters(slots: torch.Tensor, labels: torch.Tensor) -> MergedSlots:
    """Replace every cluster by its mean at its representative; zero the other members. Differentiable."""
    k = slots.shape[1]
    member = F.one_hot(labels, k).to(slots.dtype)  # (B, K slot, K cluster)
    sums = member.transpose(1, 2) @ slots  # (B, K cluster, D)
    counts = member.sum(dim=1)[:, :, None]  # (B, K cluster, 1)
    keep = counts[:, :, 0] > 0  # a cluster id is a slot index; it exists where it has members
    means = sums / counts.clamp(min=1)
    return MergedSlots(means * keep[:, :, None], keep, labels)


def merge_redundant_slots(
    slots: torch.Tensor,
    threshold: float,
    *,
    attn: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    min_clusters: int = 1,
) -> MergedSlots:
    """Find and merge redundant slots.

    slots (B, K, D); threshold on cosine distance in [0, 2]. With attn (B, K, N) the distance is taken
    between attention maps instead of slot vectors. valid (B, K) bool: slots already switched off never
    merge. A sample left with fewer than `min_clusters` clusters keeps every slot (the group's code
    uses 3, i.e. it refuses to collapse to 1 or 2 clusters).
    """
    distance = cosine_distance(attn if attn is not None else slots.detach())
    labels = complete_linkage(distance, threshold, valid)
    num_clusters = (labels == torch.arange(labels.shape[1], device=labels.device)).sum(dim=1)
    if valid is not None:
        num_clusters = num_clusters - (~valid).sum(dim=1)
    too_few = num_clusters < min_clusters
    identity = torch.arange(labels.shape[1], device=labels.device).expand_as(labels)
    labels = torch.where(too_few[:, None], identity, labels)
    merged = merge_clusters(slots, labels)
    if valid is not None:
        merged = MergedSlots(merged.slots * valid[:, :, None], merged.keep & valid, merged.labels)
    return merged
