"""The training loop's statistics window: per-step stats stay on the device until the host reads them once.

    window = StatsWindow(first_step=0)
    window.add(stats)                         # (4,) device tensor from optimisation_step; no sync
    losses, timed_out = window.read(dist_info, timed_out=False)   # the window's one sync
    means = window.take_means()               # {"loss": ..., ...} over the steps read since the last call

`read` is where a non-finite loss is found: it raises NonFiniteLossError naming the first such step. The
loop reads before anything it saves (a checkpoint, a validation that may become best.pt), so a checkpoint
never holds weights that a non-finite loss has touched.
"""

from __future__ import annotations

import torch

from dias.engine import distributed
from dias.engine.step import STAT_NAMES
from dias.errors import DiasError


class NonFiniteLossError(DiasError, RuntimeError):
    """The loss became NaN or infinite; the run stopped before a checkpoint could hold the weights it touched."""


class StatsWindow:
    """Per-step (loss, recon, distill, grad_norm) rows on the device; host-side sums of the rows already read."""

    def __init__(self, first_step: int):
        self.first_step = first_step  # the step of the first row not yet read
        self._pending: list[torch.Tensor] = []
        self._sums = torch.zeros(len(STAT_NAMES), dtype=torch.float64)
        self._count = 0

    def add(self, stats: torch.Tensor) -> None:
        self._pending.append(stats)

    def read(self, dist_info: distributed.DistInfo | None, *, timed_out: bool = False) -> tuple[list[float], bool]:
        """(each pending step's loss, whether any rank is timed out): one device-to-host copy, one collective.

        The rows are averaged over the ranks (`dist_info` None: this process only, with no collective, as
        after Ctrl-C when the ranks are not in step). Raises NonFiniteLossError at the first step whose
        loss is not finite on some rank.
        """
        device = self._pending[0].device if self._pending else torch.device("cpu")
        if dist_info is not None:
            device = dist_info.device
        rows = torch.stack(self._pending) if self._pending else torch.zeros(0, len(STAT_NAMES), device=device)
        flag = torch.tensor([float(timed_out)], device=rows.device)
        packed = torch.cat([rows.flatten(), flag])
        world_size = 1
        if dist_info is not None:
            distributed.all_reduce_sum_(packed, dist_info)  # NaN on any rank stays NaN in the sum
            world_size = dist_info.world_size
        host = packed.double().cpu()  # the sync
        rows = host[:-1].view(-1, len(STAT_NAMES)) / world_size
        bad = torch.nonzero(~torch.isfinite(rows[:, 0])).flatten()
        if len(bad):
            index = int(bad[0])
            raise NonFiniteLossError(
                f"loss is {float(rows[index, 0])} at step {self.first_step + index}; the run stopped before any "
                "checkpoint held the weights it changed. Continue from the last good checkpoint (if one was "
                "written) with a lower optim.lr, or try train.precision=fp32"
            )
        self._sums += rows.sum(dim=0)
        self._count += len(rows)
        self.first_step += len(rows)
        self._pending.clear()
        return rows[:, 0].tolist(), bool(host[-1] > 0)

    def take_means(self) -> dict[str, float]:
        """The mean of each statistic over the steps read since the last call; starts the next window."""
        means = dict(zip(STAT_NAMES, (self._sums / max(self._count, 1)).tolist(), strict=True))
        self._sums.zero_()
        self._count = 0
        return means

    @property
    def num_read(self) -> int:
        """Steps read since the last take_means."""
        return self._count
