"""Slot initializers: they give the first slots (B, K, D) that slot attention refines."""

from __future__ import annotations

import torch
from torch import nn

from dias.errors import UsageError
from dias.modules.layers import MLP

BOX_FEATURES = 4  # a conditioning box is (left, top, right, bottom), normalised to [0, 1]


def standard_normal(
    given: torch.Tensor | None, shape: tuple[int, int, int], *, like: torch.Tensor, name: str
) -> torch.Tensor:
    """A standard-normal draw of `shape` on `like`'s device and dtype, or `given` (a recorded draw) in its place.

    A given draw of another shape is a UsageError naming `name`: the expected shape is (B, K, D).
    """
    if given is None:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    if tuple(given.shape) != shape:
        raise UsageError(f"{name} has shape {tuple(given.shape)}; expected (B, K, D) = {shape} (num_slots sets K)")
    return given


class NormalShared(nn.Module):
    """One Gaussian shared by all slots: slots = mean + exp(log_std) * noise, noise i.i.d. per (b, k, d).

    As in the release, the noise is drawn in eval mode too, so evaluation is stochastic. To pin it, pass
    `noise` (DIAS.forward's `init_noise`): the slots then stay a function of `mean` and `log_std`, which
    keep their gradient, unlike a constant `init_slots`. Any number of slots can be drawn.
    """

    def __init__(self, num_slots: int, slot_dim: int):
        super().__init__()
        self.num_slots = num_slots
        self.mean = nn.Parameter(torch.empty(1, 1, slot_dim))
        self.log_std = nn.Parameter(torch.empty(1, 1, slot_dim))
        nn.init.xavier_uniform_(self.mean)
        nn.init.xavier_uniform_(self.log_std)

    def forward(
        self, batch_size: int, *, num_slots: int | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Slots (B, K, D); `noise` (B, K, D) replaces the standard-normal draw (e.g. one recorded elsewhere)."""
        shape = (batch_size, num_slots or self.num_slots, self.mean.shape[-1])
        noise = standard_normal(noise, shape, like=self.mean, name="slot noise")
        return self.mean + noise * self.log_std.exp()  # (B, K, D)


class LearnedQueries(nn.Module):
    """One learned query per slot (1, K, D), the same for every image; deterministic."""

    def __init__(self, num_slots: int, slot_dim: int):
        super().__init__()
        self.num_slots = num_slots
        self.queries = nn.Parameter(torch.empty(1, num_slots, slot_dim))
        nn.init.xavier_uniform_(self.queries)

    def forward(
        self, batch_size: int, *, num_slots: int | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The queries (B, K, D); `noise` is accepted for the initializers' common signature, and must be None."""
        if noise is not None:
            raise UsageError("learned queries draw no noise; pass init_noise only with model.initializer=normal_shared")
        if num_slots is not None and num_slots != self.num_slots:
            raise UsageError(f"learned queries hold {self.num_slots} slots; cannot give {num_slots}")
        return self.queries.expand(batch_size, -1, -1)  # (B, K, D)


class BoxMLP(nn.Module):
    """Conditional first slots from boxes: Linear -> GELU -> Linear (-> LayerNorm), one slot per box.

    boxes (B, K, 4) -> (B, K, D). The video releases condition frame 0 on each object's box (normalised ltrb;
    padding rows hold a pad value); RandSF.Q uses the MLP's output as the query itself, SmoothSA-video as the
    mean of its preheater's sample with a LayerNorm after the MLP (`post_norm`). Deterministic.
    """

    def __init__(self, in_features: int, slot_dim: int, *, hidden_features: int | None = None, post_norm: bool = False):
        super().__init__()
        self.mlp = MLP(in_features, hidden_features or slot_dim, out_features=slot_dim)
        self.norm = nn.LayerNorm(slot_dim) if post_norm else nn.Identity()

    def forward(self, boxes: torch.Tensor) -> torch.Tensor:
        return self.norm(self.mlp(boxes))  # (B, K, D)
