"""SmoothSA's query "preheater": a shared-Gaussian sample refined by attention to the features.

SmoothSA (Zhao et al., "Smoothing Slot Attention Iterations and Recurrences", https://arxiv.org/abs/2508.05417;
code https://github.com/Genera1Z/SmoothSA) starts slot attention from queries that have already looked at
the image, so its first iteration does not have to undo a random start:

    sample = mean + noise * exp(log_std)                       (B, K, D), one Gaussian shared by all slots,
                                                               or mean = box_mlp(boxes) (SmoothSA-video's
                                                               conditional first frame: one slot per box)
    memory = memory_proj(inputs)                               (B, N, D), not normalised
    x = sample + CrossAttn(x, memory)                          cross-attention first, on the raw sample
    x = x + SelfAttn(self_attn_norm(x))                        pre-norm self-attention among the slots
    qinit = x + mlp(mlp_norm(x))                               pre-norm GELU MLP
    query = qinit.detach() + query_noise * exp(query_log_std)  in training
    query = qinit.detach()                                     in eval

The preheater is trained only by regressing `qinit` onto the final slots
(dias.methods.smoothsa.objective.preheat_loss): slot attention starts from a detached copy, so it sends
no gradient into `qinit`. While `detach_flag` is set (the release's first tenth of training) the
preheater also reads detached inputs, so that loss does not reach the feature projection either.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dias.modules.initializers import BoxMLP, standard_normal
from dias.modules.layers import MLP, MultiHeadAttention


class PreheaterOutput(NamedTuple):
    sample: torch.Tensor  # (B, K, D) mean + noise * exp(log_std): the refinement's starting point
    qinit: torch.Tensor  # (B, K, D) refined queries; their only gradient comes from the preheat loss
    query: torch.Tensor  # (B, K, D) what slot attention starts from: qinit.detach() (+ noise in training)


class Preheater(nn.Module):
    """Shared-Gaussian sample -> cross-attention to the inputs -> self-attention -> MLP, bias-free inside.

    Any number of slots can be drawn. As in the release, `noise` is drawn in eval mode too; `query_noise`
    only in training, after `noise`. The persistent bool buffer `detach_flag` (default True) says whether
    the preheater reads `inputs.detach()` when a call does not say; it holds an official checkpoint's value
    (the release's schedule writes it). `dias train` passes the scheduled flag to every call instead
    (`detach_inputs`, from dias.methods.smoothsa.method's plan), so the forward reads no state that changes.
    """

    def __init__(
        self,
        in_features: int,
        slot_dim: int,
        *,
        num_slots: int,
        num_heads: int = 4,
        mlp_hidden_dim: int = 1024,
        box_features: int | None = None,
    ):
        super().__init__()
        self.num_slots = num_slots
        # Zero init, as released: the first samples are plain N(0, 1) noise. With box_features the mean is
        # instead a post-norm MLP of each slot's box (NormalMlpPreheated in the SmoothSA release).
        if box_features is None:
            self.mean = nn.Parameter(torch.zeros(1, 1, slot_dim))
        else:
            self.box_mlp = BoxMLP(box_features, slot_dim, post_norm=True)
        self.log_std = nn.Parameter(torch.zeros(1, 1, slot_dim))
        self.query_log_std = nn.Parameter(torch.zeros(1, 1, slot_dim))
        self.memory_proj = nn.Linear(in_features, slot_dim)  # with bias, unlike everything after it
        self.cross_attn = MultiHeadAttention(slot_dim, num_heads)
        self.self_attn_norm = nn.LayerNorm(slot_dim, bias=False)
        self.self_attn = MultiHeadAttention(slot_dim, num_heads)
        self.mlp_norm = nn.LayerNorm(slot_dim, bias=False)
        self.mlp = MLP(slot_dim, mlp_hidden_dim, bias=False)
        self.register_buffer("detach_flag", torch.tensor(True))

    def forward(
        self,
        inputs: torch.Tensor,
        *,
        boxes: torch.Tensor | None = None,
        num_slots: int | None = None,
        noise: torch.Tensor | None = None,
        query_noise: torch.Tensor | None = None,
        detach_inputs: bool | None = None,
    ) -> PreheaterOutput:
        """inputs (B, N, C) projected features -> sample, qinit, query (B, K, D).

        boxes (B, K, 4) are required by, and only by, a preheater built with box_features; they set K.
        noise / query_noise (B, K, D) replace the two standard-normal draws (e.g. recorded ones; query_noise
        is used in training only). detach_inputs overrides the `detach_flag` buffer for this call.
        """
        if (boxes is None) != (getattr(self, "box_mlp", None) is None):
            raise ValueError("pass boxes exactly when the preheater was built with box_features")
        mean = self.mean if boxes is None else self.box_mlp(boxes)  # (1, 1, D) or (B, K, D)
        k = (num_slots or self.num_slots) if boxes is None else boxes.shape[1]
        shape = (inputs.shape[0], k, self.log_std.shape[-1])
        noise = standard_normal(noise, shape, like=self.log_std, name="preheater noise")
        sample = mean + noise * self.log_std.exp()  # (B, K, D)
        detach = bool(self.detach_flag) if detach_inputs is None else detach_inputs
        memory = self.memory_proj(inputs.detach() if detach else inputs)  # (B, N, D)
        # The release swaps the decoder layer's blocks: cross-attention first, and its pre-norm is the
        # identity, so neither the raw sample nor the memory is normalised before it.
        x = sample + self.cross_attn.cross_attention(sample, memory)[0]
        x = x + self.self_attn.self_attention(self.self_attn_norm(x))
        qinit = x + self.mlp(self.mlp_norm(x))  # (B, K, D)
        query = qinit.detach()  # slot attention must not train the preheater
        if self.training:
            query_noise = standard_normal(query_noise, shape, like=self.log_std, name="preheater query_noise")
            query = query + query_noise * self.query_log_std.exp()
        return PreheaterOutput(sample, qinit, query)
