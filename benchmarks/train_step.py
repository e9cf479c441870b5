"""Training-step speed and memory: the package's step against the official code's and a plain implementation of it.

    DIAS_OFFICIAL=CHECKOUT python benchmarks/train_step.py [--config configs/dias-coco.yaml] [--batch-sizes 8 32]
        [--steps 4] [--threads 2] [--clock wall]

Rows (each measured in a fresh subprocess, so peak memory is its own):
- `official fp32`: the official DIAS code's own step (benchmarks/official_dias.py), where DIAS_OFFICIAL names a
  checkout of github.com/Genera1Z/DIAS (left out without it): fp32, as its train.py runs on a CPU;
- `baseline fp32`: the official DIAS code's dataflow (github.com/Genera1Z/DIAS, config dias_r-coco.py) written
  plainly here, on purpose a separate implementation that shares no code with the package, so that the
  package's step is timed against something it cannot have slowed down: slot attention with a shared Gaussian
  initializer, then the random-order auto-regressive decoder as nn.TransformerDecoder with a hook forcing
  need_weights on the last cross-attention and explicit permute/unpermute gathers; its loss written out as
  the release computes it (mse of the reconstruction + cross-entropy of the first iteration's attention
  towards the last one's, detached); features given, weights random;
- `dias fp32` / `dias fp32 compiled` / `dias bf16`: the package's step, `dias.train.step.optimisation_step`
  with the config's method (`dias.methods.method_of`: its model, its objective, the plan of its last training
  step), features given (fp32, fp32 under torch.compile as `train.compile=true` does, and bf16 autocast);
- `dias fp32 + backbone`: the same step running the frozen backbone on images every step (random weights;
  the cost is the same), which is what the feature cache removes.
Each row runs with the C allocator as its command runs it (`--malloc as-run`): the package's rows keep freed
memory in malloc's heap, as the `dias` command does (dias.runtime.memory), the official and baseline rows use
the C library's defaults, as `python train.py` does. `--malloc kept` or `--malloc system` gives every row the
same setting, which separates what the code gains from what the allocator gains; `--malloc paired` runs every
variant both ways, interleaved (the ratios are then to the official and baseline rows with the C library's
malloc).
Each step is forward, loss, backward, clip and an Adam step. Prints a Markdown table: ms per step (median;
`--clock cpu` counts the process's CPU time instead of elapsed time, for a machine other jobs load), the
ratio of the official step's and the baseline's time to the row's,
the step's floating-point work (counted by torch.utils.flop_counter, the CPU's fused attention included
(flops.py), on one extra step: matmuls and
attention, forward and backward), the rate that makes, and peak resident memory of the process. A last line
gives the rate of one large fp32 matrix product on the same threads: the ceiling any implementation of this
step can approach.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from flops import flop_counter, matmul_gflops
from machine import MALLOC_SETTINGS, cpu_name, set_malloc
from official_dias import OFFICIAL_ENV, official_step
from timing import CLOCK_HELP, CLOCKS
from torch import nn

from dias.config import load_config
from dias.methods import build_model, method_of
from dias.runtime.device import Precision
from dias.schema import Config
from dias.train.step import build_optimizer, optimisation_step

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("official fp32", "baseline fp32", "dias fp32", "dias fp32 compiled", "dias bf16", "dias fp32 + backbone")
CPU = torch.device("cpu")
MALLOC_MODES = ("as-run", *MALLOC_SETTINGS, "paired")  # see the module's docstring


def row_settings(mode: str, variant: str) -> list[str]:
    """The malloc settings ("kept", "system") a variant's rows run with under `mode`, one row each."""
    if mode == "paired":
        return list(MALLOC_SETTINGS)
    if mode == "as-run":  # the package's rows as the `dias` command sets malloc, the others as `python` leaves it
        return ["kept" if variant.startswith("dias") else "system"]
    return [mode]


class BaselineDIAS(nn.Module):
    """The official DIAS dataflow written the plain way, for timing only (the weights are random).

    Letters: B batch, N tokens, C feature width, D slot width, K slots.
    """

    def __init__(
        self, *, num_slots: int, feature_dim: int, slot_dim: int, num_tokens: int, num_iters: int, mlp_dim: int,
        num_layers: int, num_heads: int, ffn_dim: int,
    ):  # fmt: skip
        super().__init__()
        c, d = feature_dim, slot_dim
        self.num_slots, self.num_iters = num_slots, num_iters
        self.project = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, c), nn.GELU(), nn.Linear(c, c))
        self.mean = nn.Parameter(torch.zeros(1, 1, d))
        self.logstd = nn.Parameter(torch.zeros(1, 1, d))
        self.norm_slots, self.proj_q = nn.LayerNorm(d), nn.Linear(d, d, bias=False)
        self.norm_inputs = nn.LayerNorm(c)
        self.proj_k, self.proj_v = nn.Linear(c, d, bias=False), nn.Linear(c, d, bias=False)
        self.rnn, self.norm_mlp = nn.GRUCell(d, d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, d))
        self.position = nn.Parameter(torch.randn(1, num_tokens, c))
        self.mask_token = nn.Parameter(torch.randn(1, 1, c) * c**-0.5)
        self.project_tokens = nn.Sequential(nn.Linear(c, c, bias=False), nn.LayerNorm(c))
        self.project_slots = nn.Sequential(nn.Linear(d, c, bias=False), nn.LayerNorm(c))
        layer = nn.TransformerDecoderLayer(
            c, num_heads, ffn_dim, 0.0, "gelu", batch_first=True, norm_first=True, bias=False
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers)
        self.norm_query = self.decoder.layers[0].norm1
        self.decoder.layers[0].norm1 = nn.Identity()
        last = self.decoder.layers[-1].multihead_attn
        last.register_forward_pre_hook(self._need_weights, with_kwargs=True)
        last.register_forward_hook(self._keep_weights)

    def _need_weights(self, module, args, kwargs):
        kwargs["need_weights"] = True
        return args, kwargs

    def _keep_weights(self, module, args, output):
        self.cross_attn = output[1]  # (B, N, K), averaged over heads

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, N, C) -> recon (B, N, C), slot-attention maps (T, B, K, N)."""
        b, n, c = features.shape
        encoded = self.project(features)
        noise = torch.randn(b, self.num_slots, self.mean.shape[-1])
        slots = self.mean.expand(b, self.num_slots, -1) + noise * self.logstd.exp()
        inputs = self.norm_inputs(encoded)
        k, v = self.proj_k(inputs), self.proj_v(inputs)
        attns = []
        for _ in range(self.num_iters):
            q = self.proj_q(self.norm_slots(slots))
            attn = (q * q.shape[-1] ** -0.5 @ k.transpose(1, 2)).softmax(dim=1)  # (B, K, N): slots compete
            attns.append(attn)
            weights = attn / (attn.sum(dim=2, keepdim=True) + 1e-5)
            updated = self.rnn((weights @ v).flatten(0, 1), slots.flatten(0, 1)).view_as(slots)
            slots = updated + self.mlp(self.norm_mlp(updated))
        tokens, memory = self.project_tokens(features), self.project_slots(slots)
        order = torch.stack([torch.randperm(n) for _ in range(b)])  # (B, N)
        keep = torch.where(
            torch.rand(b, 1) < 0.5, torch.randint(0, n - 1, (b, 1)), torch.full((b, 1), int(n * 0.1) - 1)
        )
        visible = torch.arange(n)[None] < keep
        shuffled = tokens.gather(1, order[:, :, None].expand(-1, -1, c))
        shuffled = torch.where(visible[:, :, None], shuffled, self.mask_token.expand(b, n, c))
        query = shuffled + self.position.expand(b, -1, -1).gather(1, order[:, :, None].expand(-1, -1, c))
        out = self.decoder(self.norm_query(query), memory)
        inverse = order.argsort(dim=1)
        recon = out.gather(1, inverse[:, :, None].expand(-1, -1, c))
        return recon, torch.stack(attns)


def baseline_loss(recon: torch.Tensor, attn: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The release's objective at the end of training (distillation weight 1), written out."""
    distill = F.cross_entropy(attn[0], attn[-1].detach())  # dim 1 (slots) is the class dim
    return F.mse_loss(recon, features) + distill


def build_baseline(cfg: Config, feature_dim: int, num_tokens: int) -> BaselineDIAS:
    model, decoder = cfg.model, cfg.model.decoder
    return BaselineDIAS(
        num_slots=model.num_slots, feature_dim=feature_dim, slot_dim=model.slot_dim, num_tokens=num_tokens,
        num_iters=model.slot_attention.num_iters, mlp_dim=model.slot_attention.mlp_dim, num_layers=decoder.num_layers,
        num_heads=decoder.num_heads, ffn_dim=int(decoder.mlp_ratio * feature_dim),
    )  # fmt: skip


def measure(variant: str, config: str, overrides: list[str], batch_size: int, steps: int, clock: str = "wall") -> dict:
    torch.manual_seed(0)
    cfg = load_config(config, overrides)
    model = build_model(cfg).train()
    grid = model.backbone.grid_size(cfg.data.image_size)
    num_tokens, feature_dim = grid[0] * grid[1], model.backbone.feature_dim
    features = torch.randn(batch_size, num_tokens, feature_dim)
    size = cfg.data.image_size
    images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    if variant.startswith("baseline"):
        model = build_baseline(cfg, feature_dim, num_tokens).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg.optim, CPU)
    for group in optimizer.param_groups:
        group["lr"] = cfg.optim.lr  # the loop sets it per step; any value costs the same
    runner = torch.compile(model) if variant.endswith("compiled") else model  # compiles in the warm-up

    if variant.startswith("official"):
        official = official_step(Path(os.environ[OFFICIAL_ENV]), batch_size=batch_size, device=CPU)

        def step(module: nn.Module) -> None:
            official()

    elif variant.startswith("baseline"):

        def step(module: nn.Module) -> None:
            recon, attn = module(features)
            loss = baseline_loss(recon, attn, features)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            optimizer.step()

    else:
        method = method_of(cfg)
        plan = method.final_plan(cfg)  # the loss weights at the end of training (DIAS: distillation weight 1)
        precision = Precision("bf16" if variant.endswith("bf16") else "fp32", CPU.type)
        scaler = torch.amp.GradScaler(CPU.type, enabled=False)
        inputs = {"images": images} if variant.endswith("+ backbone") else {"features": features}

        def step(module: nn.Module) -> None:
            optimisation_step(
                module, inputs, method=method, plan=plan, cfg=cfg, optimizer=optimizer, scaler=scaler, params=params,
                precision=precision,
            )  # fmt: skip

    now = CLOCKS[clock]
    times = []
    flops = 0
    for index in range(steps + 3):  # two warm-up steps, the timed steps, then one counted step (eager)
        counted = index == steps + 2
        counter = flop_counter() if counted else contextlib.nullcontext()
        start = now()
        with counter:
            step(model if counted else runner)
        if counted:
            flops = counter.get_total_flops()
        elif index >= 2:
            times.append(now() - start)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ms = 1000 * statistics.median(times)
    return {"variant": variant, "batch_size": batch_size, "ms": ms, "gflop": flops / 1e9, "peak_mib": peak_mib}


def default_variants() -> list[str]:
    """Every variant; the official step only where OFFICIAL_ENV names a checkout."""
    return [v for v in VARIANTS if os.environ.get(OFFICIAL_ENV) or not v.startswith("official")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "dias-coco.yaml"))
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="runs of every variant, interleaved; medians kept")
    parser.add_argument("--variants", nargs="+", default=default_variants(), choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall", help=CLOCK_HELP)
    parser.add_argument("--gemm-size", type=int, default=2048, help="side of the matrix product of the last line")
    parser.add_argument("--malloc", choices=MALLOC_MODES, default="as-run", help="the C allocator's setting per row")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        malloc = set_malloc(row_settings(args.malloc, args.child[0])[0])  # before the row's first tensor
        row = measure(args.child[0], args.config, args.override, int(args.child[1]), args.steps, args.clock)
        print(json.dumps({**row, "malloc": malloc}))
        return
    print(
        f"# {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.clock} clock, "
        f"{Path(args.config).name}, median of {args.rounds} interleaved rounds x {args.steps} timed steps, "
        f"--malloc {args.malloc}"
    )
    print(
        "| variant | batch | ms / step | vs official | vs baseline | GFLOP / step | GFLOP/s | peak memory (MiB) | "
        "malloc |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    gemm = []
    child = [sys.executable, __file__, "--config", args.config, "--steps", str(args.steps)]
    child += [item for override in args.override for item in ("--override", override)]
    child += ["--threads", str(args.threads), "--clock", args.clock]
    runs = [(variant, setting) for variant in args.variants for setting in row_settings(args.malloc, variant)]
    for batch_size in args.batch_sizes:
        rows: dict[tuple[str, str], list[dict]] = {run: [] for run in runs}
        errors: dict[tuple[str, str], str] = {}
        for _ in range(args.rounds):  # interleaved, so a slow spell of the machine hits every variant
            gemm.append(matmul_gflops(args.gemm_size, clock=CLOCKS[args.clock]))
            for run in runs:
                command = [*child, "--malloc", run[1], "--child", run[0], str(batch_size)]
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode != 0:
                    errors[run] = (result.stderr.strip().splitlines() or ["no output"])[-1]
                    continue
                rows[run].append(json.loads(result.stdout.strip().splitlines()[-1]))
        medians = {run: statistics.median(row["ms"] for row in rows[run]) for run in runs if rows[run]}
        # the references as a user runs them: with the C library's malloc where they were timed with it
        official_ms, baseline_ms = (
            medians.get((name, "system"), medians.get((name, "kept"))) for name in ("official fp32", "baseline fp32")
        )
        for run in runs:
            variant = run[0]
            if run not in medians:
                print(f"| {variant} | {batch_size} | failed: {errors.get(run, '')} | | | | | | |")
                continue
            ms = medians[run]
            gflop = rows[run][0]["gflop"]
            peak = max(row["peak_mib"] for row in rows[run])
            versus = [f"{reference / ms:.2f}x" if reference else "" for reference in (official_ms, baseline_ms)]
            print(
                f"| {variant} | {batch_size} | {ms:.0f} | {' | '.join(versus)} | {gflop:.0f} | {gflop / ms * 1000:.0f} "
                f"| {peak:.0f} | {rows[run][0]['malloc']} |"
            )
    print(
        f"\nA {args.gemm_size}x{args.gemm_size} fp32 matrix product ran at {statistics.median(gemm):.0f} GFLOP/s on "
        f"these threads (median of {len(gemm)}, from {min(gemm):.0f} to {max(gemm):.0f})."
    )


if __name__ == "__main__":
    main()
