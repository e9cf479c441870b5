"""RandSF.Q's transitioner: the next frame's slot-attention query from a past slot state and a frame's features.

RandSF.Q (Zhao et al., "Learning Video Slot Attention Query from Random Slot-Feature Pairs", code
https://github.com/Genera1Z/RandSF.Q, `RSFQTransit` in object_centric_bench/model/randsfq.py; SmoothSA's video
model imports the same class). At frame t > 0, with the slots of frames [0, t) and the features of frames [0, t]:

    slots_past = slots[:, -(dt - 1):]       (B, i, K, D)     a window of at most dt - 1 past slot states
    inputs_past = inputs[:, -dt:]           (B, i + 1, N, C) and of at most dt frames, the current one last
    training and i > 1:  s ~ U{0..i-1}, f ~ U{1..i} per video (two randint draws, s first)
    otherwise:           s = i - 1 (the last slots), f = i (the current frame)
    query = DecoderLayer(target = slots_past[s].detach() + E(i - s),
                         memory = input_proj(inputs_past[f].detach()) + E(i - f))     (B, K, D)

E is a learned embedding of the time gap (dt rows). The random slot-feature pairs teach the layer to predict a
query from any gap, not only from the last slots and the current frame. Both inputs are detached: no gradient
flows back through time, so the transitioner learns only through the current frame's slot attention.
The layer is a post-norm nn.TransformerDecoderLayer (GELU, bias-free, `dropout` on its attention weights,
residual branches and MLP, as the release builds it), so its state dict is the release's.
"""

from __future__ import annotations

import torch
from torch import nn


class Transitioner(nn.Module):
    """Query (B, K, D) of the next frame from the past slots (B, i, K, D) and the frames' inputs (B, i+1, N, C)."""

    def __init__(
        self,
        in_features: int,
        slot_dim: int,
        *,
        window: int,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.window = window  # the release's dt: the largest time gap embedded is window - 1
        self.time_embed = nn.Embedding(window, slot_dim)
        self.input_proj = nn.Linear(in_features, slot_dim)
        self.layer = nn.TransformerDecoderLayer(
            d_model=slot_dim,
            nhead=num_heads,
            dim_feedforward=int(slot_dim * mlp_ratio),
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=False,
            bias=False,
        )

    def draws_pair(self, num_past: int) -> bool:
        """Whether a call with num_past past slot states draws a random pair (training, window of i > 1)."""
        return self.training and min(num_past, self.window - 1) > 1

    def forward(
        self,
        slots: torch.Tensor,
        inputs: torch.Tensor,
        *,
        pair: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """slots (B, t, K, D) of the frames before the current one, inputs (B, t+1, N, C) up to and including it.

        pair = (slot index, feature index), each (B,) long, replaces the two random draws of a training call
        with a window of i > 1 past slots (e.g. recorded ones); it indexes the windows, as the draws do.
        """
        slots = slots[:, -(self.window - 1) :]  # (B, i, K, D)
        inputs = inputs[:, -self.window :]  # (B, i+1, N, C)
        b, i = slots.shape[:2]
        if inputs.shape[1] != i + 1:
            raise ValueError(f"expected inputs of {i + 1} frames beside {i} past slot states, got {inputs.shape[1]}")
        rows = torch.arange(b, device=slots.device)
        if self.draws_pair(i):
            if pair is None:
                pair = (
                    torch.randint(0, i, (b,), device=slots.device),
                    torch.randint(1, i + 1, (b,), device=slots.device),
                )
            slot_index, input_index = pair
        else:
            slot_index = torch.full((b,), i - 1, dtype=torch.long, device=slots.device)
            input_index = torch.full((b,), i, dtype=torch.long, device=slots.device)
        target = slots[rows, slot_index].detach() + self.time_embed(i - slot_index)[:, None]  # (B, K, D)
        memory = self.input_proj(inputs[rows, input_index].detach()) + self.time_embed(i - input_index)[:, None]
        return self.layer(target, memory)  # (B, K, D)
