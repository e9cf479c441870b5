"""The training loop's statistics window: per-step stats stay on the device until the host reads them once.

    window = StatsWindow(method.stat_names, first_step=0, loss_scaled=precision.scaled)
    window.add(stats)                         # (S,) device tensor from optimisation_step; no sync
    losses, timed_out = window.read(dist_info, timed_out=False)   # the window's one sync
    means = window.take_means()               # {"loss": ..., ...} over the steps read since the last call

`read` is where a non-finite step is found: it raises NonFiniteLossError naming the first step whose loss,
or whose gradient norm, is not finite. A finite loss with a NaN gradient still makes Adam write NaN weights,
so the gradient norm counts too, except under fp16 loss scaling, where the GradScaler skips such a step
(and lowers its scale) before Adam sees it. The gradient norm is taken after DDP's all-reduce, so every rank
sees the same one. The loop reads before anything it saves (a checkpoint, a validation that may become
best.pt), so a checkpoint never holds weights that a non-finite step has touched.
"""

from __future__ import annotations

import math

import torch

from dias.errors import DiasError
from dias.methods.base import GRAD_NORM_STAT, LOSS_STAT
from dias.runtime import distributed


class NonFiniteLossError(DiasError, RuntimeError):
    """The loss or the gradient became NaN or infinite; the run stopped before a checkpoint held the weights."""


class StatsWindow:
    """Per-step rows of `names` (loss, the method's terms, grad_norm) on the device; host-side sums of those read."""

    def __init__(self, names: tuple[str, ...], *, first_step: int, loss_scaled: bool, precision: str = "fp32"):
        self.names = names
        self.precision = precision  # train.precision in effect: the advice on a non-finite loss names it
        self.first_step = first_step  # the step of the first row not yet read
        self.loss_scaled = loss_scaled  # fp16 + GradScaler: a non-finite gradient is a step the scaler skips
        self._pending: list[torch.Tensor] = []
        self._sums = torch.zeros(len(self.names), dtype=torch.float64)
        self._count = 0

    def add(self, stats: torch.Tensor) -> None:
        self._pending.append(stats)

    def read(self, dist_info: distributed.DistInfo | None, *, timed_out: bool = False) -> tuple[list[float], bool]:
        """(each pending step's loss, whether any rank is timed out): one device-to-host copy, one collective.

        The rows are averaged over the ranks (`dist_info` None: this process only, with no collective, as
        after Ctrl-C when the ranks are not in step). Raises NonFiniteLossError at the first step whose
        loss (or, without loss scaling, gradient norm) is not finite on some rank.
        """
        device = self._pending[0].device if self._pending else torch.device("cpu")
        if dist_info is not None:
            device = dist_info.device
        rows = torch.stack(self._pending) if self._pending else torch.zeros(0, len(self.names), device=device)
        flag = torch.tensor([float(timed_out)], device=rows.device)
        packed = torch.cat([rows.flatten(), flag])
        world_size = 1
        if dist_info is not None:
            distributed.all_reduce_sum_(packed, dist_info)  # NaN on any rank stays NaN in the sum
            world_size = dist_info.world_size
        host = packed.double().cpu()  # the sync
        rows = host[:-1].view(-1, len(self.names)) / world_size
        loss_col, grad_col = self.names.index(LOSS_STAT), self.names.index(GRAD_NORM_STAT)
        bad = ~torch.isfinite(rows[:, loss_col])
        if not self.loss_scaled:
            bad |= ~torch.isfinite(rows[:, grad_col])
        if bad.any():
            index = int(torch.nonzero(bad)[0])
            loss, grad_norm = float(rows[index, loss_col]), float(rows[index, grad_col])
            what = f"loss is {loss}" if not math.isfinite(loss) else f"gradient norm is {grad_norm} (loss {loss:.4g})"
            precision = "" if self.precision == "fp32" else f", or try train.precision=fp32 (not {self.precision})"
            raise NonFiniteLossError(
                f"{what} at step {self.first_step + index}; the run stopped before any checkpoint held the "
                f"weights it changed. Continue from the last good checkpoint (if one was written) with a lower "
                f"optim.lr{precision}"
            )
        self._sums += rows.sum(dim=0)
        self._count += len(rows)
        self.first_step += len(rows)
        self._pending.clear()
        return rows[:, loss_col].tolist(), bool(host[-1] > 0)

    def take_means(self) -> dict[str, float]:
        """The mean of each statistic over the steps read since the last call; starts the next window."""
        means = dict(zip(self.names, (self._sums / max(self._count, 1)).tolist(), strict=True))
        self._sums.zero_()
        self._count = 0
        return means

    @property
    def num_read(self) -> int:
        """Steps read since the last take_means."""
        return self._count
