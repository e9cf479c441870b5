"""Training-step speed and memory: dias against a straightforward implementation of SPEC's dataflow.

    python benchmarks/train_step.py [--config configs/dias-coco.yaml] [--batch-sizes 8 32] [--steps 4]

Rows (each measured in a fresh subprocess, so peak memory is its own):
- `baseline fp32`: the release's dataflow written plainly (nn.TransformerDecoder with a hook forcing
  need_weights on the last cross-attention, explicit permute/unpermute gathers), features given;
- `dias fp32` / `dias fp32 compiled` / `dias bf16`: our model with features given (fp32, fp32 under
  torch.compile as `train.compile=true` does, and bf16 autocast);
- `dias fp32 + backbone`: our model running the frozen ViT on 256 px images every step (random weights;
  the cost is the same), which is what the feature cache removes.
Each step is forward, reconstruction + distillation loss, backward, clip 1.0 and an Adam step.
Prints a Markdown table: ms per step (median), the step's floating-point work (counted by
torch.utils.flop_counter on one extra step: matmuls and attention, forward and backward), the rate that
makes, and peak resident memory of the process. A last line gives the rate of one large fp32 matrix
product on the same threads: the ceiling any implementation of this step can approach.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from machine import cpu_name
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dias.config import load_config
from dias.losses import distillation_loss, reconstruction_loss, select_distillation_pair
from dias.methods import build_model

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("baseline fp32", "dias fp32", "dias fp32 compiled", "dias bf16", "dias fp32 + backbone")


class BaselineDIAS(nn.Module):
    """SPEC §4-7 written the plain way, for timing only (the weights are random)."""

    def __init__(self, num_slots=7, feature_dim=384, slot_dim=256, num_tokens=256, num_iters=3):
        super().__init__()
        c, d = feature_dim, slot_dim
        self.num_slots, self.num_iters, self.num_tokens = num_slots, num_iters, num_tokens
        self.project = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, c), nn.GELU(), nn.Linear(c, c))
        self.mean = nn.Parameter(torch.zeros(1, 1, d))
        self.logstd = nn.Parameter(torch.zeros(1, 1, d))
        self.norm1q, self.proj_q = nn.LayerNorm(d), nn.Linear(d, d, bias=False)
        self.norm1kv, self.proj_k, self.proj_v = (
            nn.LayerNorm(c),
            nn.Linear(c, d, bias=False),
            nn.Linear(c, d, bias=False),
        )
        self.rnn, self.norm2 = nn.GRUCell(d, d), nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.pe = nn.Parameter(torch.randn(1, num_tokens, c))
        self.mask_token = nn.Parameter(torch.randn(1, 1, c) * c**-0.5)
        self.project1 = nn.Sequential(nn.Linear(c, c, bias=False), nn.LayerNorm(c))
        self.project2 = nn.Sequential(nn.Linear(d, c, bias=False), nn.LayerNorm(c))
        layer = nn.TransformerDecoderLayer(c, 4, 4 * c, 0.0, "gelu", batch_first=True, norm_first=True, bias=False)
        self.decoder = nn.TransformerDecoder(layer, 4)
        self.norm0 = self.decoder.layers[0].norm1
        self.decoder.layers[0].norm1 = nn.Identity()
        last = self.decoder.layers[-1].multihead_attn
        last.register_forward_pre_hook(self._need_weights, with_kwargs=True)
        last.register_forward_hook(self._keep_weights)

    def _need_weights(self, module, args, kwargs):
        kwargs["need_weights"] = True
        return args, kwargs

    def _keep_weights(self, module, args, output):
        self.cross_attn = output[1]  # (B, N, K), averaged over heads

    def forward(self, features):
        b, n, c = features.shape
        encode = self.project(features)
        slots = (
            self.mean.expand(b, self.num_slots, -1)
            + torch.randn(b, self.num_slots, self.mean.shape[-1]) * self.logstd.exp()
        )
        kv = self.norm1kv(encode)
        k, v = self.proj_k(kv), self.proj_v(kv)
        attns = []
        for _ in range(self.num_iters):
            q = self.proj_q(self.norm1q(slots))
            a0 = (q * q.shape[-1] ** -0.5 @ k.transpose(1, 2)).softmax(dim=1)
            attns.append(a0)
            a = a0 / (a0.sum(dim=2, keepdim=True) + 1e-5)
            y = self.rnn((a @ v).flatten(0, 1), slots.flatten(0, 1)).view_as(slots)
            slots = y + self.ffn(self.norm2(y))
        tokens, memory = self.project1(features), self.project2(slots)
        idxs = torch.stack([torch.randperm(n) for _ in range(b)])
        keep = torch.where(
            torch.rand(b, 1) < 0.5, torch.randint(0, n - 1, (b, 1)), torch.full((b, 1), int(n * 0.1) - 1)
        )
        visible = torch.arange(n)[None] < keep
        shuffled = tokens.gather(1, idxs[:, :, None].expand(-1, -1, c))
        shuffled = torch.where(visible[:, :, None], shuffled, self.mask_token.expand(b, n, c))
        query = shuffled + self.pe.expand(b, -1, -1).gather(1, idxs[:, :, None].expand(-1, -1, c))
        out = self.decoder(self.norm0(query), memory)
        inverse = idxs.argsort(dim=1)
        recon = out.gather(1, inverse[:, :, None].expand(-1, -1, c))
        attn = self.cross_attn.gather(1, inverse[:, :, None].expand(-1, -1, self.num_slots)).transpose(1, 2)
        return recon, torch.stack(attns), attn


def measure(variant: str, config: str, batch_size: int, steps: int) -> dict:
    torch.manual_seed(0)
    cfg = load_config(config)
    if variant.startswith("baseline"):
        model = BaselineDIAS(cfg.model.num_slots).train()
    else:
        model = build_model(cfg).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    features = torch.randn(batch_size, 256, 384)
    images = torch.randint(0, 256, (batch_size, 3, cfg.data.image_size, cfg.data.image_size), dtype=torch.uint8)
    runner = torch.compile(model) if variant.endswith("compiled") else model  # compiles in the warm-up
    times = []
    flops = 0
    for step in range(steps + 3):  # two warm-up steps, the timed steps, then one counted step (eager)
        counter = FlopCounterMode(display=False) if step == steps + 2 else contextlib.nullcontext()
        start = time.perf_counter()
        with counter:
            train_step(model if step == steps + 2 else runner, optimizer, params, features, images, variant)
        if step == steps + 2:
            flops = counter.get_total_flops()
        elif step >= 2:
            times.append(time.perf_counter() - start)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ms = 1000 * statistics.median(times)
    return {"variant": variant, "batch_size": batch_size, "ms": ms, "gflop": flops / 1e9, "peak_mib": peak_mib}


def train_step(model, optimizer, params, features, images, variant: str) -> None:
    """Forward, reconstruction + distillation loss, backward, clip 1.0, Adam step."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.endswith("bf16")):
        if variant.startswith("baseline"):
            recon, attn, _ = model(features)
            target = features
        else:
            out = model(images=images) if variant.endswith("+ backbone") else model(features=features)
            recon, attn, target = out.recon, out.attn, out.features
        loss = reconstruction_loss(recon, target) + distillation_loss(*select_distillation_pair(attn))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """The fp32 rate of a large square matrix product: this machine's practical ceiling."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "dias-coco.yaml"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="runs of every variant, interleaved; medians kept")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.config, int(args.child[1]), args.steps)))
        return
    print(
        f"# {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {Path(args.config).name}, "
        f"median of {args.rounds} interleaved rounds x {args.steps} timed steps"
    )
    print("| variant | batch | ms / step | vs baseline | GFLOP / step | GFLOP/s | peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|")
    gemm = []
    for batch_size in args.batch_sizes:
        rows: dict[str, list[dict]] = {variant: [] for variant in args.variants}
        errors: dict[str, str] = {}
        for _ in range(args.rounds):  # interleaved, so a slow spell of the machine hits every variant
            gemm.append(matmul_gflops())
            for variant in args.variants:
                child = [sys.executable, __file__, "--config", args.config, "--steps", str(args.steps)]
                result = subprocess.run([*child, "--child", variant, str(batch_size)], capture_output=True, text=True)
                if result.returncode != 0:
                    errors[variant] = result.stderr.strip().splitlines()[-1]
                    continue
                rows[variant].append(json.loads(result.stdout.strip().splitlines()[-1]))
        baseline_ms = None
        for variant in args.variants:
            if not rows[variant]:
                print(f"| {variant} | {batch_size} | failed: {errors.get(variant, '')} | | | | |")
                continue
            ms = statistics.median(row["ms"] for row in rows[variant])
            gflop = rows[variant][0]["gflop"]
            peak = max(row["peak_mib"] for row in rows[variant])
            baseline_ms = ms if variant.startswith("baseline") else baseline_ms
            speedup = f"{baseline_ms / ms:.2f}x" if baseline_ms else ""
            print(
                f"| {variant} | {batch_size} | {ms:.0f} | {speedup} | {gflop:.0f} | {gflop / ms * 1000:.0f} "
                f"| {peak:.0f} |"
            )
    print(
        f"\nA 2048x2048 fp32 matrix product ran at {statistics.median(gemm):.0f} GFLOP/s on these threads "
        f"(median of {len(gemm)}, from {min(gemm):.0f} to {max(gemm):.0f})."
    )


if __name__ == "__main__":
    main()
