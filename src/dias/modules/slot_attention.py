"""Slot attention that keeps every iteration's attention, optionally truncated.

As the release records it (SlotAttentionWithAllAttent in https://github.com/Genera1Z/DIAS,
object_centric_bench/model/dias.py): the softmax over slots, before the renormalisation over tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dias.modules.layers import MLP

# How far back gradients reach through the iterations: None = every iteration; "bi-level" = only the last one,
# with a straight-through path to the initial slots (BO-QSA, Jia et al. 2023, https://arxiv.org/abs/2210.08990).
TRUNCATIONS = (None, "bi-level")


class SlotAttentionOutput(NamedTuple):
    slots: torch.Tensor  # (B, K, D) slots after the last iteration
    attn: torch.Tensor  # (T, B, K, N) softmax over slots of every iteration, before the token renormalisation


class SlotAttention(nn.Module):
    """Iterative attention in which slots compete for tokens (softmax over the slot axis).

    Keys and values are computed once; each iteration updates the slots with a GRU cell and a residual
    pre-norm MLP. Gradients flow through every iteration, unless `truncate="bi-level"`: then the slots
    entering the last iteration are `slots.detach() + init - init.detach()` (init = the slots given to
    forward), so the earlier iterations are constants for autograd and the last iteration's input gradient
    passes straight through to `init`. That holds in eval too, as in the SmoothSA release.
    """

    def __init__(
        self,
        in_features: int,
        slot_dim: int,
        *,
        mlp_hidden_dim: int = 1024,
        num_iters: int = 3,
        eps: float = 1e-5,
        truncate: str | None = None,
    ):
        super().__init__()
        if truncate not in TRUNCATIONS:
            raise ValueError(f"unknown slot-attention truncation {truncate!r}; choose None or 'bi-level'")
        self.truncate = truncate
        self.num_iters = num_iters
        self.eps = eps
        self.scale = slot_dim**-0.5
        self.input_norm = nn.LayerNorm(in_features)
        self.key_proj = nn.Linear(in_features, slot_dim, bias=False)
        self.value_proj = nn.Linear(in_features, slot_dim, bias=False)
        self.query_norm = nn.LayerNorm(slot_dim)
        self.query_proj = nn.Linear(slot_dim, slot_dim, bias=False)
        self.gru = nn.GRUCell(slot_dim, slot_dim)
        self.mlp_norm = nn.LayerNorm(slot_dim)
        self.mlp = MLP(slot_dim, mlp_hidden_dim)

    def forward(
        self,
        inputs: torch.Tensor,
        slots: torch.Tensor,
        *,
        slot_mask: torch.Tensor | None = None,
        num_iters: int | None = None,
    ) -> SlotAttentionOutput:
        """inputs (B, N, C), slots (B, K, D), slot_mask (B, K) bool with False = slot switched off."""
        inputs = self.input_norm(inputs)
        keys = self.key_proj(inputs)  # (B, N, D)
        values = self.value_proj(inputs)  # (B, N, D)
        b, k, d = slots.shape
        init = slots
        num_iters = num_iters or self.num_iters
        attns = []
        for t in range(num_iters):
            if self.truncate == "bi-level" and t == num_iters - 1:
                # Value of `slots`, gradient of `init`. Summed left to right as the release does: (s + i) - i
                # equals s only up to float rounding, and matching the release means rounding the same way.
                slots = slots.detach() + init - init.detach()
            attn = self.attention(slots, keys, slot_mask)  # (B, K, N)
            attns.append(attn)
            weights = attn / (attn.sum(dim=2, keepdim=True) + self.eps)  # weighted mean over tokens
            updates = weights.to(values.dtype) @ values  # (B, K, D)
            slots = self.gru(updates.reshape(b * k, d), slots.reshape(b * k, d)).view(b, k, d)
            slots = slots + self.mlp(self.mlp_norm(slots))
        return SlotAttentionOutput(slots, torch.stack(attns))

    def attention(self, slots: torch.Tensor, keys: torch.Tensor, slot_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Softmax over the slot axis, in float32 even under autocast; masked slots get exactly 0."""
        queries = self.query_proj(self.query_norm(slots)) * self.scale  # (B, K, D)
        with torch.autocast(slots.device.type, enabled=False):
            logits = queries.float() @ keys.float().transpose(1, 2)  # (B, K, N)
            if slot_mask is None:
                return logits.softmax(dim=1)
            keep = slot_mask[:, :, None]
            # The lowest finite value rather than -inf: an all-masked sample then gives zeros, not NaN.
            logits = logits.masked_fill(~keep, torch.finfo(logits.dtype).min)
            return logits.softmax(dim=1) * keep
