"""60 training steps of the official SmoothSA release against the package's, on CPU in float32.

    DIAS_SMOOTHSA_OFFICIAL=CHECKOUT python benchmarks/smoothsa_trajectory.py [--record-to FILE] [--official-commit SHA]

CHECKOUT is a checkout (or `git archive`) of https://github.com/Genera1Z/SmoothSA; it is not shipped, so
its path comes from the environment variable DIAS_SMOOTHSA_OFFICIAL (or --official). Two phases, in one process:

- **record** (only when FILE, default /tmp/smoothsa_trajectory_seed0.pt, is missing): the release's own
  `train_epoch` from its train.py, called as is, with the optimizer, GradScaler, ClipGradNorm, MetricWrap
  losses and schedule callbacks that its `build_from_config` makes from config-smoothsa/smoothsa_r-coco.py,
  whose `total_step = 100000` line is replaced by the number of steps before the file is executed (so the
  LR warm-up is steps // 20 and the preheater's detached phase steps // 10). As in the DIAS trajectory
  fixture: `set_seed(seed)` and deterministic algorithms, the full model built (timm's backbone with
  pretrained=False, so it consumes the RNG as released), then the backbone replaced by a parameter-free
  feeder that takes features (B, N, C) and returns them as its (B, C, h, w) output; batch t is
  `pool[idx[t]]` from a pool of 16 maps `randn(16, 256, 384)` of a separate generator seeded seed + 1;
  the `.cuda()` callback dropped, and `autocast("cuda")` and GradScaler disable themselves on the CPU.
  Hooks and wrappers record every random draw (the preheater's two `randn_like`, the decoder's `vmap`
  permutation, `randint` and `rand`), the LR and detach flag in effect, each loss term, the gradient norm
  before clipping, the step-0 weights and full weight snapshots after steps // 2 and steps steps. The file
  holds plain tensors and dicts only (`torch.load(FILE, weights_only=True)`).
- **compare**: the package's SmoothSA from configs/smoothsa-coco.yaml (train.total_steps = the recorded
  steps, fp32, the recorded batch size, K and LR) with the recorded step-0 weights, stepped by
  dias.train.step.optimisation_step with the package's optimiser, LR schedule and method plan, the
  recorded features and draws injected. It writes benchmarks/results/smoothsa_trajectory.md: the worst
  difference of each quantity over the steps.

The official model needs einops (pure Python; `pip install einops` into the venv). Its package imports cv2,
pycocotools and wandb for datasets and logging that this run does not use: where they are missing, empty
stand-in modules are put in sys.modules before the import. The 60 + 60 steps take about 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import NamedTuple

import torch
from machine import cpu_name
from torch import nn

from dias.config import load_config
from dias.io import atomic_write, atomic_write_bytes
from dias.methods import build_model, method_of
from dias.methods.smoothsa.config import detach_steps
from dias.methods.smoothsa.method import PREHEAT
from dias.methods.smoothsa.official import load_official_smoothsa_weights, smoothsa_official_key_map
from dias.runtime.device import resolve_precision
from dias.schedules import lr_at
from dias.schema import warmup_steps
from dias.train.step import build_optimizer, optimisation_step

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_CONFIG = "config-smoothsa/smoothsa_r-coco.py"
OFFICIAL_ENV = "DIAS_SMOOTHSA_OFFICIAL"  # a checkout of the official SmoothSA code
PACKAGE_CONFIG = REPO / "configs" / "smoothsa-coco.yaml"
RESULT = REPO / "benchmarks" / "results" / "smoothsa_trajectory.md"
DEFAULT_RECORD = Path("/tmp/smoothsa_trajectory_seed0.pt")
FORMAT = "smoothsa-trajectory-v1"
TOTAL_STEP_LINE = re.compile(r"^total_step = \d+", re.MULTILINE)  # the config line the run replaces
STAND_INS = {"cv2": (), "pycocotools": ("mask",), "wandb": ()}  # imported by the release, unused here
POOL_SIZE, GRID, FEATURE_DIM = 16, (16, 16), 384
# The draws of one official training step, in the order the release makes them (preheater ε, ε2; decoder).
DRAW_ORDER = ("randn_like", "randn_like", "vmap", "randint", "rand")
ZERO_GRADIENT = "m.aggregat.norm1q.bias"  # its gradient is zero in exact arithmetic (softmax over slots)


# --- record: the release's training loop, observed ---------------------------------------------------------


def import_official(checkout: Path) -> types.ModuleType:
    """The release's train.py as a module: train_epoch, set_seed and the builders it imports."""
    for name, submodules in STAND_INS.items():
        if name in sys.modules or importlib.util.find_spec(name) is not None:
            continue
        sys.modules[name] = types.ModuleType(name)
        for child in submodules:
            sys.modules[f"{name}.{child}"] = types.ModuleType(f"{name}.{child}")
            setattr(sys.modules[name], child, sys.modules[f"{name}.{child}"])
    sys.path.insert(0, str(checkout))
    spec = importlib.util.spec_from_file_location("smoothsa_official_train", checkout / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Feeder(nn.Module):
    """The backbone's place: the batch's features (B, N, C) returned as the backbone's (B, C, h, w) output."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input.transpose(1, 2).unflatten(2, GRID)


@contextlib.contextmanager
def timm_offline():
    """timm builds the release's backbone with pretrained=False: its init draws the same RNG, nothing downloads."""
    import timm

    create = timm.create_model
    timm.create_model = lambda *args, **kwargs: create(*args, **{**kwargs, "pretrained": False})
    try:
        yield
    finally:
        timm.create_model = create


@contextlib.contextmanager
def keeping_draws(draws: list[tuple[str, torch.Tensor]]):
    """While active, torch.randn_like, torch.vmap (the function it returns), randint and rand append their output."""
    originals = {name: getattr(torch, name) for name in ("randn_like", "vmap", "randint", "rand")}

    def keeping(name):
        def call(*args, **kwargs):
            out = originals[name](*args, **kwargs)
            draws.append((name, out.detach().clone()))
            return out

        return call

    def vmap(func, *args, **kwargs):
        mapped = originals["vmap"](func, *args, **kwargs)

        def call(*inputs, **options):
            out = mapped(*inputs, **options)
            draws.append(("vmap", out.detach().clone()))
            return out

        return call

    for name in ("randn_like", "randint", "rand"):
        setattr(torch, name, keeping(name))
    torch.vmap = vmap
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(torch, name, original)


class StepRecorder:
    """A callback after the release's own: reads what its schedules set, and per step what the hooks saw."""

    def __init__(self, model: nn.Module, snapshot_steps: tuple[int, ...]):
        self.model, self.snapshot_steps = model, snapshot_steps
        self.draws: list[tuple[str, torch.Tensor]] = []
        self.step: dict[str, object] = {}  # this step's observations, filled by the hooks
        self.steps: list[dict[str, object]] = []
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def before_train(self, **pack):
        return pack

    def before_epoch(self, **pack):
        return pack

    def before_step(self, **pack):
        self.draws.clear()
        self.step = {
            "lr_scheduled": float(pack["optimiz"].param_groups[0]["lr"]),
            "detach_flag_scheduled": bool(pack["model"].m.initializ.detach_flag),
            "rng_state": torch.get_rng_state(),
        }
        return pack

    def after_forward(self, **pack):
        return pack

    def after_step(self, **pack):
        names = tuple(name for name, _ in self.draws)
        if names != DRAW_ORDER:
            raise RuntimeError(f"step {pack['step_count']}: the release drew {names}, expected {DRAW_ORDER}")
        (_, noise), (_, query_noise), (_, perm), (_, keep1), (_, uniform) = self.draws
        keep = torch.where(uniform < 0.5, keep1, int(GRID[0] * GRID[1] * 0.1) - 1)  # as the release's decoder
        self.step |= {
            "noise_init": noise,
            "noise_query": query_noise,
            "perm_idxs": perm,
            "keep1": keep1,
            "cond_uniform": uniform,
            "keep": keep,
            "visible_mask": torch.arange(perm.shape[1])[None] < keep,
            "loss_recon_weighted": pack["loss"]["recon"][0].detach().clone().squeeze(0),
            "loss_preheat_weighted": pack["loss"]["preheat"][0].detach().clone().squeeze(0),
        }
        self.steps.append(self.step)
        done = pack["step_count"] + 1  # the release counts the step after its after_step callbacks
        if done in self.snapshot_steps:
            self.snapshots[done] = trainable_weights(self.model)
        return pack

    def after_epoch(self, **pack):
        return pack

    def after_train(self, **pack):
        return pack

    def observe(self, key: str, value) -> None:
        self.step[key] = value


def trainable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Official name ("m." prefix) -> a copy of every trainable parameter."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def feature_batches(seed: int, num_steps: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pool (16, N, C) and each step's indices into it (T, B), from a generator of their own."""
    generator = torch.Generator().manual_seed(seed + 1)
    pool = torch.randn(POOL_SIZE, GRID[0] * GRID[1], FEATURE_DIM, generator=generator)
    idx = torch.stack([torch.randperm(POOL_SIZE, generator=generator)[:batch_size] for _ in range(num_steps)])
    return pool, idx


def record(checkout: Path, *, seed: int, num_steps: int, batch_size: int, commit: str) -> dict:
    """The release's training for `num_steps` steps, on CPU in float32, with everything it drew and computed."""
    official = import_official(checkout)
    Config, build = official.Config, official.build_from_config
    text, replaced = TOTAL_STEP_LINE.subn(f"total_step = {num_steps}", (checkout / OFFICIAL_CONFIG).read_text())
    if replaced != 1:
        raise RuntimeError(f"{OFFICIAL_CONFIG}: expected one `total_step = N` line, found {replaced}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(OFFICIAL_CONFIG).name
        path.write_text(text)
        cfg = Config.fromfile(path)
    before_step = cfg.callback_t[0].before_step
    if "batch.image" not in str(before_step[0].ikeys):
        raise RuntimeError("the release's first before_step callback is no longer the batch's .cuda()")
    cfg.callback_t[0].before_step = before_step[1:]  # the batch stays on the CPU
    cfg.callback_t[1].log_file = None  # AverageLog: no log file, no wandb run

    official.set_seed(seed)  # train.py main()'s order: seeds, determinism, then the model
    torch.use_deterministic_algorithms(True, warn_only=True)
    with timm_offline():
        model = official.ModelWrap(build(cfg.model), cfg.model_imap, cfg.model_omap)
    model.freez(cfg.freez)
    model.m.encode_backbone = Feeder()
    weights = trainable_weights(model)
    cfg.optimiz.params = model.parameters()
    optimiz = build(cfg.optimiz)
    optimiz.gscale = build(cfg.gscale)
    optimiz.gclip = build(cfg.gclip)
    loss_fn_t = official.MetricWrap(**build(cfg.loss_fn_t))
    acc_fn_t = official.MetricWrap(detach=True, **build(cfg.acc_fn_t))
    recorder = StepRecorder(model, (num_steps // 2, num_steps))
    callback_t = [*build(cfg.callback_t), recorder]
    hook_observations(recorder, model, optimiz, loss_fn_t)

    pool, idx = feature_batches(seed, num_steps, batch_size)
    segment = torch.ones(batch_size, 256, 256, 1, dtype=torch.bool)  # read only by the mBO accuracy
    pack = Config({})
    pack.dataset_t = [{"image": pool[i], "segment": segment} for i in idx]
    pack.model, pack.optimiz, pack.loss_fn_t, pack.acc_fn_t = model, optimiz, loss_fn_t, acc_fn_t
    pack.callback_t, pack.total_step, pack.val_interval = callback_t, cfg.total_step, cfg.val_interval
    pack.step_count, pack.epoch = 0, 0
    [callback.before_train(**pack) for callback in pack.callback_t]
    with keeping_draws(recorder.draws):
        official.train_epoch(pack)  # one epoch of num_steps batches; validation is skipped
    [callback.after_train(**pack) for callback in pack.callback_t]
    if pack.step_count != num_steps:
        raise RuntimeError(f"the release took {pack.step_count} steps, expected {num_steps}")

    steps = recorder.steps
    trajectory = {  # per step -> (T, ...); Python floats (LR, scale, norm at Adam) as float64
        key: torch.tensor([s[key] for s in steps], dtype=torch.float64)
        if isinstance(steps[0][key], float)
        else torch.stack([torch.as_tensor(s[key]) for s in steps])
        for key in steps[0]
    }
    trajectory |= {
        "format": FORMAT,
        "official_commit": commit,
        "config": OFFICIAL_CONFIG,
        "config_override": f"total_step = {num_steps}",
        "torch_version": str(torch.__version__),
        "num_threads": torch.tensor(torch.get_num_threads()),
        "seed": torch.tensor(seed),
        "steps": torch.tensor(num_steps),
        "batch": torch.tensor(batch_size),
        "num_slots": torch.tensor(cfg.max_num),
        "base_lr": torch.tensor(cfg.lr, dtype=torch.float64),
        "warmup_steps": torch.tensor(cfg.total_step // 20),
        "detach_steps": torch.tensor(cfg.total_step // 10),
        "preheat_weight": torch.tensor(float(loss_fn_t.metrics["preheat"]["weight"]), dtype=torch.float64),
        "gradscaler_enabled": torch.tensor(optimiz.gscale.is_enabled()),
        "weights": weights,
        "feature_pool": pool,
        "feature_idx": idx,
        "snapshot_steps": torch.tensor(sorted(recorder.snapshots)),
    }
    trajectory |= {f"snapshot_{n}": w for n, w in recorder.snapshots.items()}
    return trajectory


def hook_observations(recorder: StepRecorder, model: nn.Module, optimiz, loss_fn_t) -> None:
    """Forward hooks and wrappers on the release's objects; each hands the recorder what it saw."""

    def preheater_called(module, args):
        recorder.observe("detach_flag", bool(module.detach_flag))
        recorder.observe("autocast_enabled", torch.is_autocast_enabled("cuda") or torch.is_autocast_enabled("cpu"))

    model.m.initializ.register_forward_pre_hook(preheater_called)
    for term in ("recon", "preheat"):  # the metric's own output: before MetricWrap applies the weight
        metric = loss_fn_t.metrics[term]["metric"]
        metric.register_forward_hook(
            lambda module, args, out, term=term: recorder.observe(f"loss_{term}", out[0].detach().clone().squeeze(0))
        )

    scale = optimiz.gscale.scale

    def scale_total(loss):  # train_epoch hands the scaler the summed objective
        recorder.observe("loss_total", loss.detach().clone())
        recorder.observe("grad_scale", float(optimiz.gscale.get_scale()) if optimiz.gscale.is_enabled() else 1.0)
        return scale(loss)

    optimiz.gscale.scale = scale_total
    clip = optimiz.gclip

    def clip_keeping_norm(params):
        norm = clip(params)  # clip_grad_norm_'s return value: the norm before clipping
        recorder.observe("grad_norm", norm.detach().clone())
        return norm

    optimiz.gclip = clip_keeping_norm

    def adam_called(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        recorder.observe("lr", float(optimizer.param_groups[0]["lr"]))
        recorder.observe("grad_norm_at_step", torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    optimiz.register_step_pre_hook(adam_called)


# --- compare: the package's training, given the same draws ------------------------------------------------


class Replay(NamedTuple):
    lr: torch.Tensor  # (T,) float64 LR each step trained with
    detach_flag: torch.Tensor  # (T,) bool the plan's detach_preheat
    stats: dict[str, torch.Tensor]  # method.stat_names (+ "preheat_weighted") -> (T,) float32
    snapshots: dict[int, dict[str, torch.Tensor]]  # steps done -> official name -> weights


def replay(trajectory: dict) -> Replay:
    """The recorded steps taken by the package's step, schedules and plan, the recorded draws injected."""
    num_steps = int(trajectory["steps"])
    cfg = load_config(
        PACKAGE_CONFIG,
        [
            f"train.total_steps={num_steps}",
            "train.precision=fp32",
            f"data.batch_size={int(trajectory['batch'])}",
            f"model.num_slots={int(trajectory['num_slots'])}",
            f"optim.lr={float(trajectory['base_lr'])}",
        ],
    )
    if (warmup_steps(cfg), detach_steps(cfg)) != (int(trajectory["warmup_steps"]), int(trajectory["detach_steps"])):
        raise RuntimeError("the package config's warm-up or detach window differs from the recorded run's")
    device = torch.device("cpu")
    method = method_of(cfg)
    torch.manual_seed(int(trajectory["seed"]))
    model = build_model(cfg)
    load_official_smoothsa_weights(model, trajectory["weights"])
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg.optim, device)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # the recorded run had no loss scaling
    precision = resolve_precision(cfg.train.precision, device)
    named = dict(model.named_parameters())
    names = {k: v for k, v in smoothsa_official_key_map(model).items() if k in trajectory["weights"]}
    snapshot_steps = set(trajectory["snapshot_steps"].tolist())
    lrs, flags, stats, snapshots = [], [], [], {}
    optim = cfg.optim
    for step in range(num_steps):
        lr = lr_at(step, optim.lr, warmup_steps(cfg), num_steps, optim.lr * optim.final_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        plan = method.plan(cfg, step)
        inputs = {
            "features": trajectory["feature_pool"][trajectory["feature_idx"][step]],  # (B, N, C)
            "init_noise": trajectory["noise_init"][step],  # (B, K, D)
            "query_noise": trajectory["noise_query"][step],  # (B, K, D)
            "perm": trajectory["perm_idxs"][step],  # (B, N)
            "visible": trajectory["visible_mask"][step],  # (B, N), permuted order
        }
        out = optimisation_step(
            model, inputs, method=method, plan=plan, cfg=cfg, optimizer=optimizer, scaler=scaler, params=params,
            precision=precision,
        )  # fmt: skip
        stats.append(torch.cat([out, out[2:3] * plan.loss_weights[PREHEAT]]))
        lrs.append(lr)
        flags.append(plan.forward_options["detach_preheat"])
        if step + 1 in snapshot_steps:
            snapshots[step + 1] = {official: named[ours].detach().clone() for official, ours in names.items()}
    stacked = torch.stack(stats)  # (T, 5)
    columns = (*method.stat_names, "preheat_weighted")
    return Replay(
        lr=torch.tensor(lrs, dtype=torch.float64),
        detach_flag=torch.tensor(flags),
        stats={name: stacked[:, i] for i, name in enumerate(columns)},
        snapshots=snapshots,
    )


class Row(NamedTuple):
    quantity: str
    worst: str
    where: str
    note: str


class Summary(NamedTuple):
    num_steps: int
    lr: float  # worst relative difference of the LR
    flags: int  # steps whose detach flag differs
    losses: float  # worst relative difference of any loss term
    grad_norm: float  # worst relative difference of the gradient norm
    weights: float  # worst max-abs difference of a tensor at any snapshot
    weights_tensor: str  # ... that tensor
    weights_other: float  # the same without ZERO_GRADIENT
    weights_other_tensor: str


def relative(ours: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
    return (ours.double() - theirs.double()).abs() / theirs.double().abs().clamp_min(1e-30)


def compare(trajectory: dict, run: Replay) -> tuple[list[Row], Summary]:
    """The worst difference of each quantity over the steps (relative per step; absolute for weights)."""
    rows = []
    lr_rel = relative(run.lr, trajectory["lr"])
    same = "equals" if torch.equal(trajectory["lr"], trajectory["lr_scheduled"]) else "differs from"
    rows.append(Row("LR", f"{lr_rel.max():.1e} rel", f"step {int(lr_rel.argmax())}",
                    f"the release's CbLinearCosine; the LR Adam used {same} the one set in before_step"))  # fmt: skip
    flags = int((run.detach_flag != trajectory["detach_flag"]).sum())
    off = (~trajectory["detach_flag"]).nonzero()
    same = "equals" if torch.equal(trajectory["detach_flag"], trajectory["detach_flag_scheduled"]) else "differs from"
    rows.append(Row("detach flag", f"{flags} of {len(run.lr)} steps differ",
                    f"off from step {int(off[0]) if len(off) else '-'}",
                    f"the release's CbSquarewave; the flag its preheater read {same} the one set"))  # fmt: skip
    quantities = {
        "total loss": ("loss", "loss_total"),
        "recon loss": ("recon", "loss_recon"),
        "preheat loss (unweighted)": ("preheat", "loss_preheat"),
        "preheat loss x 100": ("preheat_weighted", "loss_preheat_weighted"),
        "gradient norm before clipping": ("grad_norm", "grad_norm"),
    }
    worst_rel = {}
    for label, (ours, theirs) in quantities.items():
        rel = relative(run.stats[ours], trajectory[theirs])
        worst_rel[ours] = rel.max().item()
        over = (rel > 1e-5).nonzero()
        note = f"first step over 1e-5: {int(over[0])}" if len(over) else "every step within 1e-5"
        if ours == "grad_norm":
            note += f"; worst abs {(run.stats[ours].double() - trajectory[theirs].double()).abs().max():.1e}"
        rows.append(Row(label, f"{rel.max():.1e} rel", f"step {int(rel.argmax())}", note))
    worst_weights = (0.0, "")
    worst_other = (0.0, "")
    for steps, weights in sorted(run.snapshots.items()):
        expected, initial = trajectory[f"snapshot_{steps}"], trajectory["weights"]
        diffs = {name: (w - expected[name]).abs().max().item() for name, w in weights.items()}
        updates = {name: (expected[name] - initial[name]).abs().max().item() for name in weights}
        worst = max(diffs, key=diffs.get)
        others = {name: d for name, d in diffs.items() if name != ZERO_GRADIENT}
        other = max(others, key=others.get)
        ratios = {name: d / max(updates[name], 1e-30) for name, d in others.items()}
        ratio = max(ratios, key=ratios.get)
        worst_weights = max(worst_weights, (diffs[worst], worst))
        worst_other = max(worst_other, (others[other], other))
        rows.append(Row(
            f"weights after {steps} steps", f"{diffs[worst]:.1e} abs", f"`{worst}`",
            f"its update {updates[worst]:.1e}; worst other tensor {others[other]:.1e} (`{other}`); "
            f"largest relative to its update: {ratios[ratio]:.1e} (`{ratio}`)",
        ))  # fmt: skip
        rows.append(Row(
            f"`{ZERO_GRADIENT}` after {steps} steps", f"{diffs[ZERO_GRADIENT]:.1e} abs", "-",
            f"the release's own update of it {updates[ZERO_GRADIENT]:.1e} (its gradient is zero in exact "
            "arithmetic; Adam scales round-off by lr / eps)",
        ))  # fmt: skip
    summary = Summary(
        num_steps=len(run.lr),
        lr=lr_rel.max().item(),
        flags=flags,
        losses=max(v for k, v in worst_rel.items() if k != "grad_norm"),
        grad_norm=worst_rel["grad_norm"],
        weights=worst_weights[0],
        weights_tensor=worst_weights[1],
        weights_other=worst_other[0],
        weights_other_tensor=worst_other[1],
    )
    return rows, summary


# --- report ------------------------------------------------------------------------------------------------


def official_commit(checkout: Path, given: str | None) -> str:
    if given:
        return given
    result = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown (pass --official-commit)"


def verdict(s: Summary) -> str:
    """One sentence: how close the package's training is to the release's."""
    round_off = s.losses < 1e-5 and s.grad_norm < 1e-5 and s.lr < 1e-12 and s.flags == 0 and s.weights_other < 1e-5
    if round_off:
        return (
            f"The package trains as the release does, to float32 round-off: over {s.num_steps} steps the LR and "
            f"detach schedules are identical (LR to {s.lr:.0e} relative), every loss term agrees to {s.losses:.1e} "
            f"relative and the gradient norm to {s.grad_norm:.1e}, and the weights to {s.weights:.1e} absolute "
            f"(`{s.weights_tensor}`; every tensor but `{ZERO_GRADIENT}` to {s.weights_other:.1e})."
        )
    return (
        f"The package does NOT follow the release beyond round-off: worst loss difference {s.losses:.1e} relative, "
        f"gradient norm {s.grad_norm:.1e}, {s.flags} detach flags differ, weights {s.weights_other:.1e} absolute "
        f"(`{s.weights_other_tensor}`); the rows above give the first step where it departs."
    )


def report(rows: list[Row], summary: Summary, trajectory: dict, command: str) -> str:
    lines = [
        f"# SmoothSA: {summary.num_steps} training steps of the package against the official release",
        "",
        f"{cpu_name()}, torch {torch.__version__}, {int(trajectory['num_threads'])} threads; official "
        f"Genera1Z/SmoothSA {trajectory['official_commit']} (`{trajectory['config']}`, "
        f"`{trajectory['config_override']}`), seed {int(trajectory['seed'])}, batch {int(trajectory['batch'])}, "
        f"K = {int(trajectory['num_slots'])}, CPU float32 (autocast and GradScaler disabled).",
        "",
        f"`{command}`",
        "",
        f"The release's own `train_epoch` ran {summary.num_steps} steps with its optimizer, GradScaler, "
        "ClipGradNorm, losses and schedule callbacks, the backbone replaced by a feeder of recorded features; "
        "the package replayed them from the same step-0 weights with `optimisation_step`, its LR schedule and "
        "SmoothSA plan, and the recorded features, preheater noises and decoder masks injected. Losses and "
        "gradient norm: worst relative difference per step; weights: max abs difference per tensor, the worst "
        "tensor named.",
        "",
        "| quantity | worst difference | where | note |",
        "|---|---|---|---|",
        *(f"| {r.quantity} | {r.worst} | {r.where} | {r.note} |" for r in rows),
        "",
        verdict(summary),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    official = os.environ.get(OFFICIAL_ENV)
    parser.add_argument(
        "--official",
        type=Path,
        default=official and Path(official),
        required=not official,
        help=f"checkout of github.com/Genera1Z/SmoothSA (default: ${OFFICIAL_ENV})",
    )
    parser.add_argument("--record-to", type=Path, default=DEFAULT_RECORD, help="the recorded trajectory")
    parser.add_argument("--official-commit", default=None, help="the checkout's commit, when it is no git clone")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if not args.record_to.is_file():
        commit = official_commit(args.official, args.official_commit)
        trajectory = record(
            args.official.resolve(), seed=args.seed, num_steps=args.steps, batch_size=args.batch_size, commit=commit
        )
        atomic_write(args.record_to, lambda f: torch.save(trajectory, f))
        print(f"recorded {args.steps} official steps to {args.record_to}")
    trajectory = torch.load(args.record_to, weights_only=True)
    rows, summary = compare(trajectory, replay(trajectory))
    command = "python benchmarks/smoothsa_trajectory.py " + " ".join(sys.argv[1:])
    text = report(rows, summary, trajectory, command)
    atomic_write_bytes(args.out, text.encode("utf-8"))
    print(text, end="")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
