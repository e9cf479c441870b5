"""The statistics window: one read per window, and a non-finite step found there names its step."""

import pytest
import torch

from dias.methods.dias.method import METHOD
from dias.train.window import NonFiniteLossError, StatsWindow

DIAS_STATS = METHOD.stat_names

NAN = float("nan")


def _window(rows: list[list[float]], *, loss_scaled: bool, first_step: int = 5) -> StatsWindow:
    window = StatsWindow(DIAS_STATS, first_step=first_step, loss_scaled=loss_scaled)
    for row in rows:  # (loss, recon, distill, grad_norm)
        window.add(torch.tensor(row))
    return window


def test_a_nan_gradient_norm_with_a_finite_loss_stops_the_run_without_loss_scaling():
    window = _window([[1.0, 1.0, 0.0, 0.5], [0.9, 0.9, 0.0, NAN]], loss_scaled=False)
    with pytest.raises(NonFiniteLossError, match="gradient norm is nan .*at step 6;"):
        window.read(None)


def test_a_nan_loss_is_named_before_a_later_nan_gradient():
    window = _window([[1.0, 1.0, 0.0, 0.5], [NAN, NAN, 0.0, NAN]], loss_scaled=False)
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 6;"):
        window.read(None)


def test_under_loss_scaling_an_inf_gradient_is_a_step_the_scaler_skips():
    window = _window([[1.0, 1.0, 0.0, float("inf")], [0.9, 0.9, 0.0, 0.5]], loss_scaled=True)
    losses, timed_out = window.read(None)
    assert losses == pytest.approx([1.0, 0.9]) and not timed_out
    assert window.first_step == 7 and window.num_read == 2
    with pytest.raises(NonFiniteLossError, match="loss is inf at step 7;"):  # the loss is still checked
        _window([[float("inf"), 1.0, 0.0, 0.5]], loss_scaled=True, first_step=7).read(None)
