"""Our training step against 60 steps of the official release's training loop (coco config, CPU float32).

The fixture (its format: tests/fixtures/README.md) records every random draw of each official step (the
feature batch, the slot noise, the decoder's permutation and visible mask), the LR and distillation weight
it trained with, its losses and gradient norm, and the weights after steps 30 and 60. We replay the draws
through dias.train.step.optimisation_step with the package's own LR schedule and the DIAS method's plan
(its distillation ramp) and objective, as the training loop does, and compare all of them: this checks
the optimizer, the warm-up and cosine schedules, the loss composition, the clipping and their order
within a step, where tests/test_official_equivalence.py checks one forward pass. The 60 steps take
minutes on a CPU, so they run under `-m slow`; the default run replays the first FAST_STEPS.

tests/fixtures/trajectory_seed0.pt is the part of it these tests read, without the step-0 weights: those are
tests/fixtures/official_seed0.pt's (tests/fixtures/shrink_trajectory_fixture.py writes the file and checks
that). DIAS_TRAJECTORY_FIXTURE=PATH runs them on another trajectory file in the full format, which holds
its own step-0 weights.
"""

import os
import re
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from fixtures.shrink_trajectory_fixture import DIGEST_KEY, weights_digest

from dias.config import load_config
from dias.methods import method_of
from dias.methods.dias.method import DISTILL
from dias.methods.dias.official import dias_official_key_map
from dias.runtime.device import resolve_precision
from dias.schedules import lr_at
from dias.schema import Config, warmup_steps
from dias.train.step import build_optimizer, optimisation_step

REPO = Path(__file__).resolve().parents[2]
FIXTURE_DIR = REPO / "tests" / "fixtures"
FIXTURE_ENV = "DIAS_TRAJECTORY_FIXTURE"
FIXTURE = Path(os.environ.get(FIXTURE_ENV, FIXTURE_DIR / "trajectory_seed0.pt"))
WEIGHTS_FIXTURE = FIXTURE_DIR / "official_seed0.pt"  # holds the shrunk trajectory's step-0 weights
CONFIGS = {  # the official config file the run executed -> ours
    "dias_r-coco.py": "dias-coco.yaml",
    "dias_r-clevrtex.py": "dias-clevrtex.yaml",
    "dias_r-voc.py": "dias-voc.yaml",
}
SETTINGS = {  # what the fixture records of the run -> the config key it sets
    "num_slots": "model.num_slots",
    "warmup_steps": "optim.warmup_steps",  # the release's total_step // 20
    "base_lr": "optim.lr",  # 4e-4 / 2 in every release config, as ours say; the fixture's value wins
    "batch": "data.batch_size",  # the batches are the fixture's; this keeps the config describing the run
}
TOTAL_STEPS = re.compile(r"\s*total_step\s*=\s*(\d+)\s*")  # the release config line the run replaced
# our step statistics (the DIAS method's stat_names) -> the fixture's; both distillation losses are unweighted
STATS = {"loss": "loss_total", "recon": "loss_recon", "distill": "loss_distill", "grad_norm": "grad_norm"}
SCHEDULE_RTOL = 1e-6
LOSS_RTOL = 1e-4
# The gradient norm is a float32 reduction over the 11M gradients of that same loss, so it carries
# that loss's relative error and some summation-order noise: the losses' tolerance, atol 0.
GRAD_NORM_RTOL = 1e-4
WEIGHT_ATOL = 1e-3
# |w_n - w_0| of a trained tensor is at least 1e-2 here, and ours agrees with the release's to ~5e-7
# relative: 1e-4 leaves room for another CPU's round-off and still fails a tensor whose update differs by
# 0.01 % (a wrong LR, betas, eps or clipping changes every update by far more).
UPDATE_RTOL = 1e-4
# The gradient of the slot queries' LayerNorm bias is zero in exact arithmetic (the softmax over slots
# ignores a vector added to every slot's query): Adam turns its round-off into updates of order lr * g / eps
# that two correct implementations do not share (ours and the release's differ by ~10 %). Its update only
# has to stay at round-off size: |w_n - w_0| below 1e-4, 30 x the release's 3.4e-6 and 100 x below the
# update of the least trained tensor, which a real gradient (a softmax over the wrong axis) would reach.
ZERO_GRADIENT = "m.aggregat.norm1q.bias"
ZERO_GRADIENT_UPDATE_ATOL = 1e-4
INITIALIZER = ("m.initializ.mean", "m.initializ.logstd")
# A constant init_slots leaves the initializer at w_0, 1.7e-3 to 3.2e-3 (max abs) from the release's
# weights after 30 and 60 steps; with the noise as an input its update equals the release's to ~1e-8.
INITIALIZER_UPDATE_ATOL = 1e-5
FAST_STEPS = 10  # the default run's replay: the warm-up (3 steps) and the first cosine steps, ~40 s on 2 cores


class Replay(NamedTuple):
    lr: torch.Tensor  # (S,) float64 LR each step trained with
    distill_weight: torch.Tensor  # (S,) float64 distillation weight of each step
    stats: dict[str, torch.Tensor]  # the method's stat_names -> (S,) float32
    initial: dict[str, torch.Tensor]  # official name -> weights before step 0
    snapshots: dict[int, dict[str, torch.Tensor]]  # steps done -> official name -> weights after them
    final: dict[str, torch.Tensor]  # official name -> weights after the last step replayed


def trajectory_config(trajectory: dict) -> Config:
    """Our config of the recorded run: the matching shipped config with the fixture's settings, in fp32.

    Both schedules span the release's total_step: the config line the run replaced, else the steps recorded.
    The rest (final LR ratio 1e-3, grad clip 1, Adam betas and eps, the cosine distillation ramp to 1) is
    the release's in every shipped config.
    """
    total = TOTAL_STEPS.fullmatch(trajectory.get("config_override", ""))
    overrides = [
        f"train.total_steps={int(total.group(1)) if total else int(trajectory['steps'])}",
        "train.precision=fp32",  # the run is CPU float32 without loss scaling (checked in `trajectory`)
    ]
    overrides += [f"{key}={trajectory[name].item()}" for name, key in SETTINGS.items() if name in trajectory]
    return load_config(REPO / "configs" / CONFIGS[Path(trajectory["config"]).name], overrides)


@pytest.fixture(scope="module")
def trajectory() -> dict:
    assert FIXTURE.is_file(), f"trajectory fixture not found at {FIXTURE}"  # it ships with the repository
    trajectory = torch.load(FIXTURE, weights_only=True)
    if "weights" not in trajectory:  # the shipped shrunk file: its step-0 weights are the forward fixture's
        weights = torch.load(WEIGHTS_FIXTURE, weights_only=True)["weights"]
        assert weights_digest(weights) == trajectory[DIGEST_KEY], (
            f"{WEIGHTS_FIXTURE} does not hold the step-0 weights of {FIXTURE}; rerun "
            "tests/fixtures/shrink_trajectory_fixture.py"
        )
        trajectory["weights"] = weights
    assert not trajectory["autocast_enabled"] and not trajectory["gradscaler_enabled"], "not a float32 run"
    assert Path(trajectory["config"]).name in CONFIGS, f"no shipped config for the release's {trajectory['config']}"
    return trajectory


def replay(trajectory: dict, num_steps: int) -> Replay:
    """The first `num_steps` official steps, taken by our step and schedules with the recorded draws injected."""
    cfg = trajectory_config(trajectory)
    optim, total_steps, warmup = cfg.optim, cfg.train.total_steps, warmup_steps(cfg)
    device = torch.device("cpu")
    method = method_of(cfg)
    model = method.build_model(cfg)
    method.load_official(model, trajectory["weights"])
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, optim, device)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # the run had no loss scaling
    precision = resolve_precision(cfg.train.precision, device)
    state = model.state_dict()  # tensors that share the parameters' storage: they follow the training
    names = {
        official: ours for official, ours in dias_official_key_map(model).items() if official in trajectory["weights"]
    }

    def weights() -> dict[str, torch.Tensor]:
        return {official: state[ours].detach().clone() for official, ours in names.items()}

    initial, snapshots = weights(), {}
    snapshot_steps = set(trajectory["snapshot_steps"].tolist())
    lrs, distill_weights, stats = [], [], []
    for step in range(num_steps):
        # schedules from the number of steps done, set before the step (as the training loop does)
        lr = lr_at(step, optim.lr, warmup, total_steps, optim.lr * optim.final_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        plan = method.plan(cfg, step)  # the distillation weight; no re-initialization coin in these configs

        # the step's draws: the batch, the decoder's mask (permuted order) and the slot initializer's noise
        inputs = {
            "features": trajectory["feature_pool"][trajectory["feature_idx"][step]],  # (B, N, C)
            "perm": trajectory["perm_idxs"][step].long(),  # (B, N); the shipped file stores it as int16
            "visible": trajectory["visible_mask"][step],  # (B, N)
            "init_noise": trajectory["noise"][step],  # (B, K, D)
        }
        stats.append(
            optimisation_step(
                model, inputs, method=method, plan=plan, cfg=cfg, optimizer=optimizer, scaler=scaler, params=params,
                precision=precision,
            )
        )  # fmt: skip
        lrs.append(lr)
        distill_weights.append(plan.loss_weights[DISTILL])
        if step + 1 in snapshot_steps:
            snapshots[step + 1] = weights()
    stacked = torch.stack(stats)  # (S, 4): loss, recon, distill, grad_norm
    return Replay(
        lr=torch.tensor(lrs, dtype=torch.float64),
        distill_weight=torch.tensor(distill_weights, dtype=torch.float64),
        stats={name: stacked[:, i] for i, name in enumerate(method.stat_names)},
        initial=initial,
        snapshots=snapshots,
        final=weights(),
    )


@pytest.fixture(scope="module")
def first_steps(trajectory) -> Replay:
    return replay(trajectory, FAST_STEPS)


@pytest.fixture(scope="module")
def full_run(trajectory) -> Replay:
    return replay(trajectory, int(trajectory["steps"]))


def labelled(label: str):
    """assert_close's `msg`: its own message, prefixed with what was compared."""
    return lambda message: f"{label}: {message}"


def check_steps(run: Replay, trajectory: dict) -> None:
    """Per step: the schedules and the returned statistics equal the recorded ones."""
    num_steps = len(run.lr)
    torch.testing.assert_close(run.lr, trajectory["lr"][:num_steps], rtol=SCHEDULE_RTOL, atol=0)
    torch.testing.assert_close(run.distill_weight, trajectory["distill_weight"][:num_steps], rtol=SCHEDULE_RTOL, atol=0)
    for ours, theirs in STATS.items():
        rtol = GRAD_NORM_RTOL if ours == "grad_norm" else LOSS_RTOL
        expected = trajectory[theirs][:num_steps]
        torch.testing.assert_close(run.stats[ours], expected, rtol=rtol, atol=0, msg=labelled(ours))


def test_first_steps_follow_the_release(first_steps, trajectory):
    check_steps(first_steps, trajectory)


def test_initializer_trains_through_the_noise(first_steps):
    """A constant init_slots would leave the initializer's parameters exactly where they started."""
    for name in INITIALIZER:
        assert not torch.equal(first_steps.final[name], first_steps.initial[name]), f"{name} did not train"


@pytest.mark.slow
def test_every_step_follows_the_release(full_run, trajectory):
    check_steps(full_run, trajectory)


@pytest.mark.slow
def test_weights_after_snapshot_steps_equal_the_release(full_run, trajectory):
    for steps, weights in full_run.snapshots.items():
        strides = trajectory[f"snapshot_{steps}_stride"]
        for name, expected in trajectory[f"snapshot_{steps}_sub"].items():
            ours = weights[name].flatten()[:: int(strides[name])]
            torch.testing.assert_close(
                ours, expected, rtol=0, atol=WEIGHT_ATOL, msg=labelled(f"{name} after {steps} steps")
            )


@pytest.mark.slow
def test_updates_after_snapshot_steps_equal_the_release(full_run, trajectory):
    """|w_n - w_0| over the whole tensor, where the weights themselves are compared on a strided sample."""
    for steps, weights in full_run.snapshots.items():
        expected = trajectory[f"snapshot_{steps}_delta_l2"]
        for name, initial in full_run.initial.items():
            update = (weights[name].double() - initial.double()).norm()
            if name == ZERO_GRADIENT:
                assert update < ZERO_GRADIENT_UPDATE_ATOL and expected[name] < ZERO_GRADIENT_UPDATE_ATOL, name
            else:
                torch.testing.assert_close(
                    update, expected[name], rtol=UPDATE_RTOL, atol=0, msg=labelled(f"{name} update")
                )


@pytest.mark.slow
def test_initializer_update_equals_the_release(full_run, trajectory):
    """The slot noise reaches mean and log_std through the graph: they move as the release's do."""
    steps = max(full_run.snapshots)
    for name in INITIALIZER:
        ours = full_run.snapshots[steps][name] - full_run.initial[name]
        expected = trajectory[f"snapshot_{steps}_sub"][name].view_as(ours) - full_run.initial[name]
        torch.testing.assert_close(ours, expected, rtol=0, atol=INITIALIZER_UPDATE_ATOL, msg=labelled(name))
