"""Decoders that reconstruct the frozen backbone features (B, N, C) from the slots (B, K, D).

RandomOrderTransformerDecoder is the release's "random auto-regressive" decoder (ARRandTransformerDecoder
in https://github.com/Genera1Z/DIAS, object_centric_bench/model/dias.py). It uses no
causal mask, so a "random order" only picks which tokens stay visible: a random subset of `keep` clue
tokens, the rest replaced by a mask token. Attention without a mask is equivariant to token order, so
this module applies the mask in the original raster order instead of permuting, un-permuting and paying
for two gathers; the result is the same up to float summation order.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dias.modules.layers import MLP, LinearNorm, MultiHeadAttention


class DecoderOutput(NamedTuple):
    recon: torch.Tensor  # (B, N, C) reconstructed features, raster order
    attn: torch.Tensor  # (B, K, N) how much each token reads from each slot; sums to 1 over K
    query: torch.Tensor | None  # (B, N, C) normalised input of the transformer stack, raster order
    memory: torch.Tensor | None  # (B, K, C) projected slots the tokens attend to


def sample_visible(
    batch_size: int,
    num_tokens: int,
    *,
    short_prob: float = 0.5,
    short_fraction: float = 0.1,
    perm: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the release's training mask: a permutation (B, N) long and visible (B, N) bool in permuted order.

    The first `keep` permuted tokens are visible; keep is uniform in [0, N-2], or int(N*short_fraction)-1
    with probability short_prob. The RNG draws follow the release's order (permutation, keep, coin).
    """
    if perm is None:
        perm = torch.vmap(lambda _: torch.randperm(num_tokens, device=device), randomness="different")(
            torch.empty(batch_size, device=device)
        )
    keep_long = torch.randint(0, num_tokens - 1, (batch_size, 1), device=perm.device)
    keep_short = int(num_tokens * short_fraction) - 1
    use_long = torch.rand(batch_size, 1, device=perm.device) < 1 - short_prob
    keep = torch.where(use_long, keep_long, keep_short)  # (B, 1)
    visible = torch.arange(num_tokens, device=perm.device) < keep  # (B, N)
    return perm, visible


def unpermute_visible(perm: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Visible flags in permuted order (B, N) -> raster order: out[b, perm[b, j]] = visible[b, j]."""
    return torch.zeros_like(visible).scatter(1, perm, visible)


class DecoderLayer(nn.Module):
    """Pre-norm transformer decoder layer, no biases anywhere (as nn.TransformerDecoderLayer(bias=False))."""

    def __init__(self, dim: int, *, num_heads: int, mlp_hidden_dim: int, first: bool = False):
        super().__init__()
        # The first layer's self-attention norm is the decoder's input_norm, applied before the stack.
        self.self_attn_norm = nn.Identity() if first else nn.LayerNorm(dim, bias=False)
        self.self_attn = MultiHeadAttention(dim, num_heads)
        self.cross_attn_norm = nn.LayerNorm(dim, bias=False)
        self.cross_attn = MultiHeadAttention(dim, num_heads)
        self.mlp_norm = nn.LayerNorm(dim, bias=False)
        self.mlp = MLP(dim, mlp_hidden_dim, bias=False)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, N, C), memory (B, K, C) -> x (B, N, C), cross-attention weights (B, N, K)."""
        x = x + self.self_attn.self_attention(self.self_attn_norm(x))
        out, weights = self.cross_attn.cross_attention(self.cross_attn_norm(x), memory, memory_mask)
        x = x + out
        x = x + self.mlp(self.mlp_norm(x))
        return x, weights


class RandomOrderTransformerDecoder(nn.Module):
    """Masked feature reconstruction: clue tokens (some masked) + positions attend to the slots."""

    def __init__(
        self,
        feature_dim: int,
        slot_dim: int,
        *,
        num_tokens: int,
        num_layers: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        visible_short_prob: float = 0.5,
        visible_short_fraction: float = 0.1,
    ):
        super().__init__()
        self.visible_short_prob = visible_short_prob
        self.visible_short_fraction = visible_short_fraction
        self.feature_proj = LinearNorm(feature_dim, feature_dim)
        self.slot_proj = LinearNorm(slot_dim, feature_dim)
        self.pos_embed = nn.Parameter(torch.empty(1, num_tokens, feature_dim))
        nn.init.trunc_normal_(self.pos_embed, std=1.0, a=-2.0, b=2.0)
        self.mask_token = nn.Parameter(torch.randn(1, 1, feature_dim) * feature_dim**-0.5)
        self.input_norm = nn.LayerNorm(feature_dim, bias=False)
        hidden = int(feature_dim * mlp_ratio)
        self.layers = nn.ModuleList(
            DecoderLayer(feature_dim, num_heads=num_heads, mlp_hidden_dim=hidden, first=i == 0)
            for i in range(num_layers)
        )

    def forward(
        self,
        features: torch.Tensor,
        slots: torch.Tensor,
        *,
        slot_mask: torch.Tensor | None = None,
        perm: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """features (B, N, C) clue tokens; slots (B, K, D); slot_mask (B, K) bool, False = ignored slot.

        perm (B, N) long and visible (B, N) bool (in permuted order) pin the training mask; in training
        mode whichever is missing is sampled. In eval mode every token is visible unless `visible` is given.
        """
        b, n, _ = features.shape
        if n != self.pos_embed.shape[1]:
            raise ValueError(f"decoder built for {self.pos_embed.shape[1]} tokens, got {n}")
        tokens = self.feature_proj(features)  # (B, N, C)
        memory = self.slot_proj(slots)  # (B, K, C)
        if self.training and visible is None:
            perm, visible = sample_visible(
                b,
                n,
                short_prob=self.visible_short_prob,
                short_fraction=self.visible_short_fraction,
                perm=perm,
                device=features.device,
            )
        if visible is not None:
            if perm is not None:
                visible = unpermute_visible(perm, visible)
            tokens = torch.where(visible[..., None], tokens, self.mask_token.to(tokens.dtype))
        query = self.input_norm(tokens + self.pos_embed)  # the positions are added to mask tokens too
        x = query
        for layer in self.layers:
            x, weights = layer(x, memory, slot_mask)
        return DecoderOutput(x, weights.transpose(1, 2), query, memory)


class MLPDecoder(nn.Module):
    """DINOSAUR-style baseline: each slot broadcast to N positions, decoded alone, mixed by a softmax over K."""

    def __init__(
        self, feature_dim: int, slot_dim: int, *, num_tokens: int, hidden_dim: int = 1024, num_hidden_layers: int = 3
    ):
        super().__init__()
        self.feature_dim = feature_dim
        self.pos_embed = nn.Parameter(torch.empty(1, 1, num_tokens, slot_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layers: list[nn.Module] = []
        width = slot_dim
        for _ in range(num_hidden_layers):
            layers += [nn.Linear(width, hidden_dim), nn.ReLU()]
            width = hidden_dim
        layers.append(nn.Linear(width, feature_dim + 1))  # features and one alpha logit per slot
        self.mlp = nn.Sequential(*layers)

    def forward(
        self,
        features: torch.Tensor | None,
        slots: torch.Tensor,
        *,
        slot_mask: torch.Tensor | None = None,
        perm: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """slots (B, K, D) -> recon (B, N, C). features, perm and visible are ignored (same call as above)."""
        out = self.mlp(slots[:, :, None, :] + self.pos_embed)  # (B, K, N, C+1)
        recon_per_slot, logits = out.split([self.feature_dim, 1], dim=-1)
        with torch.autocast(slots.device.type, enabled=False):
            logits = logits.squeeze(-1).float()  # (B, K, N)
            if slot_mask is not None:
                logits = logits.masked_fill(~slot_mask[:, :, None], torch.finfo(logits.dtype).min)
            alpha = logits.softmax(dim=1)
            if slot_mask is not None:
                alpha = alpha * slot_mask[:, :, None]
        recon = torch.einsum("bkn,bknc->bnc", alpha.to(recon_per_slot.dtype), recon_per_slot)
        return DecoderOutput(recon, alpha, None, None)
