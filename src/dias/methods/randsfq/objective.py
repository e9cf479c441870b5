"""RandSF.Q's own loss term, as a pure function: SlotContrast's temporal contrast of the slots."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def slot_contrast_loss(slots: torch.Tensor, *, tau: float = 0.1, shift: int = 1) -> torch.Tensor:
    """SlotContrast (Manasyan et al., "Temporally Consistent Object-Centric Learning by Contrasting Slots",
    2024), as the RandSF.Q release computes it (SlotContrastLoss in object_centric_bench/learn/metric_videosaur.py).

    slots (B, T, K, D) are L2-normalised and pooled over the batch per frame: M = K*B candidates. For each
    frame t and each slot n of frame t + shift, a softmax over the M slots m of frame t of cos(m, n) / tau
    should pick m = n; the loss is the cross-entropy of that pick, mean over the T - shift frame pairs and
    the M slots, in float32. Every slot of every other video in the batch is a negative.
    """
    b, t, k, d = slots.shape
    x = F.normalize(slots.float(), p=2.0, dim=-1)
    x = x.permute(1, 2, 0, 3).reshape(t, k * b, d)  # (T, M, D), M ordered (slot, video)
    logits = torch.einsum("tmd,tnd->tmn", x[:-shift], x[shift:]) / tau  # (T - shift, M, M)
    # softmax over m, the earlier frame's slots (the class axis 1 of the release's cross-entropy)
    log_prob = logits.log_softmax(dim=1)
    return -log_prob.diagonal(dim1=1, dim2=2).mean()
