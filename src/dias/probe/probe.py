"""The recognition probe: a small MLP from a matched slot to its object's class logits and box.

    probe = Probe(slot_dim=256, num_classes=91)
    logits, boxes = probe(slots)                      # slots (P, D): one matched slot per object
    loss = probe_loss(logits, boxes, classes, target_boxes)

As in the DIAS authors' probe: Linear(D, 512) -> GELU -> Dropout(0.1) -> Linear(512, classes + 4); the
loss is cross-entropy on the logits plus L1 on the raw 4-vector (left, top, right, bottom, normalised),
weight 1 each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HIDDEN_DIM = 512
DROPOUT = 0.1
BOX_DIM = 4


class Probe(nn.Module):
    def __init__(self, slot_dim: int, num_classes: int, *, hidden_dim: int = HIDDEN_DIM, dropout: float = DROPOUT):
        super().__init__()
        self.num_classes = num_classes
        self.net = nn.Sequential(
            nn.Linear(slot_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes + BOX_DIM),
        )

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """slots (P, D) -> class logits (P, classes), box (P, 4)."""
        out = self.net(slots)
        return out[:, : self.num_classes], out[:, self.num_classes :]


def probe_loss(
    logits: torch.Tensor, boxes: torch.Tensor, classes: torch.Tensor, target_boxes: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy on the class logits (P, classes) + L1 on the boxes (P, 4), weight 1 each."""
    return F.cross_entropy(logits.float(), classes) + F.l1_loss(boxes.float(), target_boxes.float())


def top_k_correct(logits: torch.Tensor, classes: torch.Tensor, k: int) -> torch.Tensor:
    """(P,) bool: the true class is among the k highest logits."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == classes[:, None]).any(dim=1)
