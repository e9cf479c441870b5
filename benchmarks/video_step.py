"""One video training step, the package's against the official release's, in one process on the CPU (fp32).

    DIAS_SMOOTHSA_OFFICIAL=CHECKOUT DIAS_RANDSFQ_OFFICIAL=CHECKOUT2 python benchmarks/video_step.py \
        [--methods smoothsa-video randsfq] [--batch-size 8] [--frames 6] [--threads 2] [--out FILE]

CHECKOUT is a checkout (or `git archive`) of https://github.com/Genera1Z/SmoothSA (the variable
smoothsa_trajectory.py reads too), CHECKOUT2 one of https://github.com/Genera1Z/RandSF.Q. Neither is shipped;
without its variable a method's official row is skipped and the package's step is still measured.

The setting is the releases' MOVi-C training (config-smoothsa/smoothsav_c-movi_c.py,
config-randsfq/randsfq_c-movi_c.py): K = 11 slots conditioned on frame 0's boxes, clips of 6 frames, batch 8,
ViT-S/14 tokens (B, T, 256, 384) given as features (random; the frozen backbone is not part of the step),
transitioner dropout 0.5, the preheater past its detached phase. One step is, on both sides:
forward -> recon MSE + 0.5 SlotContrast (+ 100 preheat MSE on frame 0, SmoothSA-video) -> backward ->
gradient-norm clip 0.05 -> Adam.

- ours: dias.methods.smoothsa_video / dias.methods.randsfq built as released (a parameter-free backbone in
  the backbone's place: features are given), the loss terms from their objective modules, torch's Adam;
- official: the release's model class built by its own `build_from_config` from the config above (timm's
  backbone with pretrained=False, then replaced by a pass-through, since the features are given as the
  backbone's (B*T, C, h, w) output), wrapped in its ModelWrap; its loss from the config's MetricWrap terms,
  summed as its train.py sums them; its ClipGradNorm and Adam. Our model gets the official model's weights
  (dias' official-weight loaders), so both compute on the same numbers.

Both models run in one process, so with one malloc setting: `--malloc kept` (the default) keeps freed memory
in malloc's heap, as the `dias` command does (dias.runtime.memory), for the official model too, whose
train.py would run with the C library's defaults (`--malloc system`, for both). Both models are built once;
rounds alternate between them (the order flips every round) and each round times `--steps` steps after one
warm-up step; the table gives medians over all timed steps. GFLOP per step is counted
by torch.utils.flop_counter (the CPU's fused attention included: flops.py) on one extra step (matmuls and
attention, forward and backward); the last line gives the rate of a large fp32 matrix product on the same
threads, measured once per round: the ceiling.

The official code imports einops (install it into the venv: `pip install einops`); cv2, pycocotools, wandb
and PyAV, which it imports for data and logging this run does not use, are replaced by empty modules where
they are missing. Both releases ship a package named `object_centric_bench`, so the first one's modules are
dropped from sys.modules before the second is imported. The full run (both methods, 3 rounds x 3 steps)
takes about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import io
import os
import shlex
import statistics
import subprocess
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from flops import flop_counter, matmul_gflops
from machine import MALLOC_SETTINGS, cpu_name, set_malloc
from smoothsa_trajectory import import_official, timm_offline
from timing import time_calls
from torch import nn

from dias.io import atomic_write
from dias.losses import reconstruction_loss
from dias.methods.randsfq.config import RandSFQConfig
from dias.methods.randsfq.model import build_randsfq
from dias.methods.randsfq.objective import slot_contrast_loss
from dias.methods.randsfq.official import load_official_randsfq_weights
from dias.methods.smoothsa_video.config import SmoothSAVideoConfig
from dias.methods.smoothsa_video.model import build_smoothsa_video
from dias.methods.smoothsa_video.objective import video_preheat_loss
from dias.methods.smoothsa_video.official import load_official_smoothsa_video_weights
from dias.methods.video_config import VideoMethodConfig
from dias.modules.backbone import PatchStats
from dias.runtime.device import Precision, cpu_has_fast_bf16
from dias.schema import PreheatedInitializerConfig, SlotAttentionConfig, TransformerDecoderConfig

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "video_step.md"
OFFICIAL_PACKAGE = "object_centric_bench"  # the package name of both releases
EXTRA_STAND_INS = ("av",)  # RandSF.Q's dataset code imports PyAV; smoothsa_trajectory stands in for the rest
IMAGE_SIZE, PATCH, FEATURE_DIM, NUM_SLOTS = 256, 16, 384, 11  # ViT-S/14 at 224 px: a 16x16 grid of 384
LR, GRAD_CLIP = 5e-5, 0.05  # the releases' Adam LR (2e-4 / 4) and clip norm
SSC_WEIGHT, PREHEAT_WEIGHT = 0.5, 100.0  # the releases' loss weights (recon 1)
# The releases' MOVi video architecture (the same numbers as tests/test_video_equivalence.py uses).
ARCHITECTURE = dict(
    image_size=IMAGE_SIZE,
    num_slots=NUM_SLOTS,
    slot_dim=256,
    decoder=TransformerDecoderConfig(
        num_layers=4, num_heads=4, mlp_ratio=4.0, visible_short_prob=0.5, visible_short_fraction=0.1
    ),
)
SLOT_ATTENTION = dict(num_iters=3, mlp_dim=1024)  # and the release's truncation
TRANSIT_DROPOUT = 0.5


@dataclass(frozen=True)
class Release:
    env: str  # the environment variable naming a checkout
    url: str
    config: str  # the official config, relative to the checkout
    build: Callable[..., nn.Module]
    load_weights: Callable[[nn.Module, dict], None]
    preheat: bool  # SmoothSA-video's third loss term
    method: type[VideoMethodConfig]  # its model.method section
    truncate: str | None  # its slot attention's truncation
    own: dict  # the builder's keywords of its own


METHODS = {
    "smoothsa-video": Release(
        env="DIAS_SMOOTHSA_OFFICIAL",
        url="https://github.com/Genera1Z/SmoothSA",
        config="config-smoothsa/smoothsav_c-movi_c.py",
        build=build_smoothsa_video,
        load_weights=load_official_smoothsa_video_weights,
        preheat=True,
        method=SmoothSAVideoConfig,
        truncate="bi-level",
        own={"preheater": PreheatedInitializerConfig(num_heads=4, ffn_dim=1024)},
    ),
    "randsfq": Release(
        env="DIAS_RANDSFQ_OFFICIAL",
        url="https://github.com/Genera1Z/RandSF.Q",
        config="config-randsfq/randsfq_c-movi_c.py",
        build=build_randsfq,
        load_weights=load_official_randsfq_weights,
        preheat=False,
        method=RandSFQConfig,
        truncate=None,
        own={},
    ),
}


def make_batch(batch_size: int, frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features (B, T, N, C) and K valid normalised ltrb boxes (B, T, K, 4)."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch_size, frames, (IMAGE_SIZE // PATCH) ** 2, FEATURE_DIM, generator=g)
    corner = torch.rand(batch_size, frames, NUM_SLOTS, 2, generator=g) * 0.6
    size = 0.1 + torch.rand(batch_size, frames, NUM_SLOTS, 2, generator=g) * 0.3
    return features, torch.cat([corner, corner + size], -1)


def adam_step(params: list[nn.Parameter], optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip(params)
    optimizer.step()


def our_step(
    release: Release, features: torch.Tensor, boxes: torch.Tensor, weights: dict | None, precision: str = "fp32"
) -> Callable:
    """The package's model and loss terms, composed as the release's step; `weights`: the official model's;
    `precision`: fp32, or bf16 autocast around the forward and the losses (as `dias train` runs it)."""
    backbone = PatchStats(patch_size=PATCH, feature_dim=FEATURE_DIM)  # never runs: features are given
    model = (
        release.build(
            backbone,
            window=features.shape[1],
            slot_attention=SlotAttentionConfig(**SLOT_ATTENTION, truncate=release.truncate),
            method=release.method(conditional=True, transit_dropout=TRANSIT_DROPOUT),
            **ARCHITECTURE,
            **release.own,
        )
        .to(features.device)
        .train()
    )
    if weights is not None:
        release.load_weights(model, weights)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=LR)
    options = dict(detach_preheat=False) if release.preheat else {}
    autocast = Precision(precision, features.device.type).autocast

    def step() -> None:
        with autocast():
            out = model(features=features, boxes=boxes, **options)
            loss = reconstruction_loss(out.recon, out.features) + SSC_WEIGHT * slot_contrast_loss(out.slots)
            if release.preheat:
                loss = loss + PREHEAT_WEIGHT * video_preheat_loss(out.qinit, out.slots)
        adam_step(params, optimizer, loss, lambda p: torch.nn.utils.clip_grad_norm_(p, GRAD_CLIP))

    return step


def import_release(checkout: Path) -> types.ModuleType:
    """The release's train.py as a module (smoothsa_trajectory.import_official), after dropping another
    release's `object_centric_bench` from sys.modules and sys.path."""
    for name in [n for n in sys.modules if n == OFFICIAL_PACKAGE or n.startswith(f"{OFFICIAL_PACKAGE}.")]:
        del sys.modules[name]
    sys.path[:] = [p for p in sys.path if not (Path(p) / OFFICIAL_PACKAGE).is_dir()]
    for name in EXTRA_STAND_INS:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = types.ModuleType(name)
    return import_official(checkout)


def official_step(release: Release, checkout: Path, features: torch.Tensor, boxes: torch.Tensor):
    """The release's step as its train.py takes it (fp32: autocast("cuda") and GradScaler are off on the CPU).

    Returns (step, the model's state dict with the release's "m."-prefixed names)."""
    official = import_release(checkout)
    cfg = official.Config.fromfile(str(checkout / release.config))
    cfg.model.transit.dt = features.shape[1]  # the release sets dt to the clip length
    with timm_offline(), contextlib.redirect_stdout(io.StringIO()):  # it prints every attribute it copies
        model = official.build_from_config(cfg.model)
    model.encode_backbone = nn.Identity()  # its input is then the backbone's output: (B, T, C, h, w) maps
    wrapped = official.ModelWrap(model, cfg.model_imap, cfg.model_omap)
    wrapped.freez(cfg.freez, verbose=False)
    wrapped.to(features.device).train()
    if hasattr(model.initializ, "detach_flag"):
        model.initializ.detach_flag.data[...] = 0  # past the first tenth of training, as ours (detach_preheat)
    loss_fn = official.MetricWrap(**official.build_from_config(cfg.get("loss_fn_t", cfg.get("loss_fn"))))
    params = [p for p in wrapped.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=LR)  # the release's `Adam` is torch's
    clip = official.build_from_config(cfg.gclip)
    video = features.transpose(-1, -2).unflatten(-1, (IMAGE_SIZE // PATCH,) * 2).contiguous()  # (B, T, C, h, w)
    batch = {"video": video, "bbox": boxes}

    def step() -> None:
        output = wrapped(batch=batch)
        losses = loss_fn(output=output, batch=batch)
        loss = sum(value[valid].mean() for value, valid in losses.values())
        adam_step(params, optimizer, loss, clip)

    return step, {k: v.detach().clone() for k, v in wrapped.state_dict().items()}


def checkout_commit(checkout: Path) -> str:
    """The commit of a git checkout, or "unknown commit" (e.g. a `git archive`)."""
    found = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip()[:7] if found.returncode == 0 else "unknown commit"


def count_gflop(step: Callable[[], None]) -> float:
    counter = flop_counter()
    with counter:
        step()
    return counter.get_total_flops() / 1e9


def measure(
    method: str,
    *,
    batch_size: int,
    frames: int,
    steps: int,
    rounds: int,
    gemm_size: int,
    device: str = "cpu",
    bf16: bool = False,
) -> dict:
    """{'rows': {name: (ms per step, GFLOP per step)}, 'gemm': [GFLOP/s per round], 'skipped': reason or None,
    'source': the official code's URL and commit, or None}. On a GPU (`device`), each step's time ends with a
    device sync (benchmarks/gpu.py). `bf16` adds our step under bf16 autocast ("dias bf16")."""
    release = METHODS[method]
    features, boxes = (t.to(device) for t in make_batch(batch_size, frames))
    steps_by_name: dict[str, Callable[[], None]] = {}
    weights, skipped = None, None
    checkout = os.environ.get(release.env)
    if checkout:
        torch.manual_seed(0)
        steps_by_name["official"], weights = official_step(release, Path(checkout), features, boxes)
    else:
        skipped = f"{release.env} is not set (a checkout of {release.url})"
    source = f"{release.url} at {checkout_commit(Path(checkout))}" if checkout else None
    torch.manual_seed(0)
    ours = {"dias": our_step(release, features, boxes, weights)}
    if bf16:
        torch.manual_seed(0)
        ours["dias bf16"] = our_step(release, features, boxes, weights, "bf16")
    steps_by_name = {**ours, **steps_by_name}
    times: dict[str, list[float]] = {name: [] for name in steps_by_name}
    gemm = []
    for round_index in range(rounds):
        gemm.append(matmul_gflops(gemm_size))
        order = list(steps_by_name)[:: 1 if round_index % 2 == 0 else -1]  # alternate who goes first
        for name in order:
            times[name] += time_calls(steps_by_name[name], steps=steps, warmup=1, device=device)
    rows = {name: (1000 * statistics.median(times[name]), count_gflop(step)) for name, step in steps_by_name.items()}
    return {"rows": rows, "gemm": gemm, "skipped": skipped, "source": source}


def table(method: str, result: dict) -> list[str]:
    rows = result["rows"]
    official_ms = rows["official"][0] if "official" in rows else None
    lines = [
        f"### {method}",
        "",
        "| step | ms / step | GFLOP / step | GFLOP/s | official / dias (time) |",
        "|---|---|---|---|---|",
    ]
    for name, (ms, gflop) in rows.items():
        ratio = f"{official_ms / ms:.2f}" if official_ms else ""
        lines.append(f"| {name} | {ms:.0f} | {gflop:.1f} | {gflop / ms * 1000:.1f} | {ratio} |")
    if result["source"]:
        lines.append(f"\nofficial: {result['source']}, {METHODS[method].config}.")
    if result["skipped"]:
        lines.append(f"\nThe official step was skipped: {result['skipped']}.")
    return lines


MALLOC_WORDS = {
    "kept": "freed memory kept, as the dias command has it; the official train.py runs with the C library's defaults",
    "default": "the C library's defaults",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--batch-size", type=int, default=8, help="clips per step")
    parser.add_argument("--frames", type=int, default=6, help="frames per clip (and the transitioner's window)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the two models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gemm-size", type=int, default=2048, help="side of the matrix product of the last line")
    parser.add_argument("--out", type=Path, default=RESULT, help="where the Markdown table is written")
    parser.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=cpu_has_fast_bf16(),
        help="add our step under bf16 autocast (default: where the CPU's bf16 is fast, by the package's probe)",
    )  # fmt: skip
    parser.add_argument(
        "--malloc", choices=MALLOC_SETTINGS, default="kept",
        help="both models' malloc (one process): kept, as the dias command sets it, or the C library's defaults",
    )  # fmt: skip
    args = parser.parse_args()
    malloc = set_malloc(args.malloc)  # "kept" or "default"
    torch.set_num_threads(args.threads)
    given = [f"{r.env}=CHECKOUT" for r in METHODS.values() if os.environ.get(r.env)]
    command = " ".join([*given, shlex.join(["python", "benchmarks/video_step.py", *sys.argv[1:]])])
    lines = [
        "# One video training step: the package against the official release (CPU, fp32"
        + (", and ours in bf16 autocast)" if args.bf16 else ")"),
        "",
        f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{datetime.date.today().isoformat()}. Batch {args.batch_size} clips x {args.frames} frames, K = "
        f"{NUM_SLOTS} (conditional on frame 0's boxes), ViT-S/14 tokens ({(IMAGE_SIZE // PATCH) ** 2} x "
        f"{FEATURE_DIM}) given as features. Medians of {args.rounds} alternating rounds x {args.steps} timed steps "
        f"per model, both models in one process, so with the same malloc setting ({MALLOC_WORDS[malloc]}); GFLOP "
        "counted by torch.utils.flop_counter (the CPU's fused attention included) on one extra step.",
        "",
        f"    {command}",
        "",
    ]
    gemm = []
    for method in args.methods:
        result = measure(
            method,
            batch_size=args.batch_size,
            frames=args.frames,
            steps=args.steps,
            rounds=args.rounds,
            gemm_size=args.gemm_size,
            bf16=args.bf16,
        )
        gemm += result["gemm"]
        lines += [*table(method, result), ""]
        print("\n".join(table(method, result)), flush=True)
    lines.append(
        f"A {args.gemm_size}x{args.gemm_size} fp32 matrix product ran at {statistics.median(gemm):.0f} GFLOP/s on "
        f"these threads (median of {len(gemm)}, from {min(gemm):.0f} to {max(gemm):.0f}): the ceiling."
    )
    print(lines[-1])
    text = "\n".join(lines) + "\n"
    atomic_write(args.out, lambda file: file.write(text.encode()))


if __name__ == "__main__":
    main()
