"""Small building blocks shared by the DIAS modules: MLPs and multi-head attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Linear -> activation -> Linear, no residual; timm's keyword names."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        out_features: int | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        bias: bool = True,
    ):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PreNormMLP(MLP):
    """LayerNorm -> Linear -> GELU (exact) -> Linear, no residual: the feature projection of DIAS."""

    def __init__(self, in_features: int, hidden_features: int, *, out_features: int | None = None):
        super().__init__(in_features, hidden_features, out_features=out_features)
        self.norm = nn.LayerNorm(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.norm(x))


class LinearNorm(nn.Module):
    """Linear (no bias) -> LayerNorm (with bias): how the decoder projects its clue tokens and slots."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.norm = nn.LayerNorm(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(x))


class MultiHeadAttention(nn.Module):
    """Bias-free multi-head attention with one packed (3C, C) input projection, rows ordered q, k, v.

    The packing matches `nn.MultiheadAttention.in_proj_weight`, so official weights load unchanged.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.in_proj = nn.Linear(dim, 3 * dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_uniform_(self.in_proj.weight)  # as nn.MultiheadAttention initialises it

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)  # (B, nh, n, hd)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, nh, n, hd = x.shape
        return x.transpose(1, 2).reshape(b, n, nh * hd)

    def self_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Unmasked self-attention over x (B, N, C); fused kernel, no weights returned."""
        q, k, v = self.in_proj(x).chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))
        return self.out_proj(self._merge(out))

    def cross_attention(
        self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries x (B, N, C) attend to memory (B, K, C); memory_mask (B, K) bool, True = attend.

        Returns the output (B, N, C) and the head-averaged weights (B, N, K). The weights are computed
        explicitly in float32; all-masked rows get zero weights instead of NaN.

        With few memory tokens (K * heads < C) the projections are folded into the memory side instead
        of applied to the N queries: logits = x (W_q,h^T k_h^T) and out = sum_h A_h (v_h W_o,h^T). That is
        the same product re-associated, and costs N*C*K*heads instead of 2*N*C*C multiply-adds.
        """
        b, n, c = x.shape
        nh, hd = self.num_heads, c // self.num_heads
        k_tokens = memory.shape[1]
        w_q, w_kv = self.in_proj.weight.split([c, 2 * c], dim=0)
        k, v = (self._heads(t) for t in F.linear(memory, w_kv).chunk(2, dim=-1))  # (B, nh, K, hd)
        fold = k_tokens * nh < c
        q = None if fold else self._heads(F.linear(x, w_q))  # (B, nh, N, hd)
        with torch.autocast(x.device.type, enabled=False):
            if fold:
                # (nh, hd, C) x (B, nh, K, hd) -> (B, C, nh*K): each head's keys seen through its query weights
                keys = torch.einsum("hdc,bhkd->bchk", w_q.float().view(nh, hd, c), k.float()).flatten(2)
                logits = (x.float() @ keys).view(b, n, nh, k_tokens).transpose(1, 2) / math.sqrt(hd)
            else:
                logits = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(hd)  # (B, nh, N, K)
            if memory_mask is not None:
                keep = memory_mask[:, None, None, :]
                logits = logits.masked_fill(~keep, torch.finfo(logits.dtype).min)
            weights = logits.softmax(dim=-1)
            if memory_mask is not None:
                weights = weights * keep
        if fold:
            # (B, nh, K, hd) x (C, nh, hd) -> (B, nh*K, C): each head's values already through the output projection
            values = torch.einsum("bhkd,chd->bhkc", v, self.out_proj.weight.view(c, nh, hd).to(v.dtype))
            out = weights.transpose(1, 2).flatten(2).to(values.dtype) @ values.flatten(1, 2)  # (B, N, C)
        else:
            out = self.out_proj(self._merge(weights.to(v.dtype) @ v))
        return out, weights.mean(dim=1)
