"""Where one training step's time goes: each part of the step, forward and backward, beside the matmul ceiling.

    python benchmarks/step_profile.py [--config configs/dias-coco.yaml] [--batch-sizes 8 32] [--repeats 3]
                                      [--threads 2] [--out FILE.md]

The step is `dias.train.step.optimisation_step` for the config's method (features given, fp32, the plan of
the last training step), as `dias train` runs it, malloc included (`--malloc kept`, dias.runtime.memory;
`--malloc system` profiles it with the C library's defaults). Each part is the package's own module or
function, called alone on the tensors one real forward gave it, and timed for its forward and for its
backward (with a random gradient of its output's shape), median of --repeats after one warm-up:

- encoder projection: `model.project` on the features (B, N, C);
- slot attention: the module with one iteration (the input norm, keys and values, one iteration), and each
  further iteration: (time with T iterations - time with one) / (T - 1), a row that counts T - 1 times;
- decoder: self-attention, cross-attention and MLP blocks (each with its pre-norm), summed over the layers;
  "decoder inputs" is the whole decoder less its layers (clue and slot projections, the mask, the input norm);
- losses: the method's objective on the forward's outputs;
- optimiser: gradient-norm clip, and the Adam step with zero_grad.

A video method's config (SmoothSA-video, RandSF.Q: a model with a transitioner) is profiled on clips of
data.clip_length frames, --batch-sizes counting clips: the projection of every frame, slot attention on frame 0
(all its iterations) and on each later frame (one), the transitioner's query for each later frame, the decoder
over all frames as images (the same rows as above), the losses.

Beside the parts, the whole step is timed in the same process, before and after them (the mean of the two
medians); "not in a part" is the whole step less the sum of the parts (autograd's bookkeeping between parts,
the initializer, stacking attention maps). FLOPs are counted by torch.utils.flop_counter, the CPU's fused
attention included (flops.py): matrix products and attention. LayerNorm, GELU, softmax and the optimiser's
elementwise work count as 0, so their rate is left blank. The ceiling is the rate of a large fp32
matrix product on the same threads, measured before and after each batch size; "ms over ceiling" is the part's
time less the time its FLOPs would take at the ceiling: what the part would save at the machine's limit.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shlex
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from flops import flop_counter, matmul_gflops
from machine import MALLOC_SETTINGS, cpu_name, set_malloc, slug
from timing import CLOCK_HELP, CLOCKS, without_note

from dias.config import load_config
from dias.io import atomic_write_bytes
from dias.methods import build_model, method_of
from dias.runtime.device import Precision
from dias.train.step import build_optimizer, optimisation_step

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
clock = CLOCKS["wall"]  # main() sets the one --clock names
Tensors = Sequence[torch.Tensor]


@dataclasses.dataclass
class Timing:
    """One part's medians (ms) and FLOPs, forward and backward; None where the part has no such pass."""

    name: str
    forward_ms: float
    forward_flop: int
    backward_ms: float | None = None
    backward_flop: int = 0
    count: int = 1  # how often the part runs in one step (its row shows one run)

    @property
    def step_ms(self) -> float:
        return self.count * (self.forward_ms + (self.backward_ms or 0.0))

    @property
    def step_flop(self) -> int:
        return self.count * (self.forward_flop + self.backward_flop)


def counted(fn: Callable[[], object]) -> tuple[object, int]:
    counter = flop_counter()
    with counter:
        result = fn()
    return result, counter.get_total_flops()


def time_part(name: str, forward: Callable[..., object], inputs: Tensors, repeats: int) -> Timing:
    """Forward and backward of `forward(*inputs)` (a tensor or a tuple whose first is differentiated).

    The inputs are detached leaves that require grad, so the backward stops at the part's edge.
    """
    leaves = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]

    def output() -> torch.Tensor:
        out = forward(*leaves)
        return out[0] if isinstance(out, tuple) else out

    out = output()  # warm-up
    grad = torch.randn_like(out)
    out.backward(grad)
    forward_times, backward_times = [], []
    for _ in range(repeats):
        start = clock()
        out = output()
        forward_times.append(clock() - start)
        start = clock()
        out.backward(grad)
        backward_times.append(clock() - start)
    out, forward_flop = counted(output)
    _, backward_flop = counted(lambda: out.backward(grad))
    return Timing(
        name,
        1000 * statistics.median(forward_times),
        forward_flop,
        1000 * statistics.median(backward_times),
        backward_flop,
    )


def time_call(name: str, fn: Callable[[], object], repeats: int) -> Timing:
    """A part with no backward (the optimiser): median ms of `fn()` after one warm-up, and its FLOPs."""
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    _, flop = counted(fn)
    return Timing(name, 1000 * statistics.median(times), flop)


def difference(name: str, total: Timing, parts: list[Timing], scale: float = 1.0) -> Timing:
    """(total - sum of parts) * scale, per pass: a part measured as what is left."""
    return Timing(
        name,
        scale * (total.forward_ms - sum(p.forward_ms for p in parts)),
        round(scale * (total.forward_flop - sum(p.forward_flop for p in parts))),
        scale * (total.backward_ms - sum(p.backward_ms or 0.0 for p in parts)),
        round(scale * (total.backward_flop - sum(p.backward_flop for p in parts))),
    )


def summed(name: str, parts: list[Timing]) -> Timing:
    return Timing(
        name,
        sum(p.forward_ms for p in parts),
        sum(p.forward_flop for p in parts),
        sum(p.backward_ms or 0.0 for p in parts),
        sum(p.backward_flop for p in parts),
    )


def layer_blocks(layer: torch.nn.Module) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """A decoder layer's three residual branches with their pre-norms: (x (B, N, C), memory (B, K, C)) -> (B, N, C)."""
    return {
        "self-attention": lambda x, memory: layer.self_attn.self_attention(layer.self_attn_norm(x)),
        "cross-attention": lambda x, memory: layer.cross_attn.cross_attention(layer.cross_attn_norm(x), memory)[0],
        "MLP": lambda x, memory: layer.mlp(layer.mlp_norm(x)),
    }


def decoder_parts(decoder: torch.nn.Module, features: torch.Tensor, slots: torch.Tensor, repeats: int) -> list[Timing]:
    """The decoder on features (B, N, C) and slots (B, K, D): its inputs and residuals, then each kind of block
    summed over the layers."""
    with torch.no_grad():
        decoded = decoder(features, slots)
    layers = getattr(decoder, "layers", [])
    blocks: dict[str, list[Timing]] = {"self-attention": [], "cross-attention": [], "MLP": []}
    for layer in layers:
        for kind, block in layer_blocks(layer).items():
            blocks[kind].append(time_part(kind, block, [decoded.query, decoded.memory], repeats))
    whole_decoder = time_part("decoder", lambda f, s: decoder(f, s).recon, [features, slots], repeats)
    block_rows = [summed(f"decoder {kind} (x{len(layers)})", timings) for kind, timings in blocks.items()]
    return [difference("decoder inputs and residuals", whole_decoder, block_rows), *block_rows]


def image_parts(model, method, plan, cfg, inputs: dict[str, torch.Tensor], repeats: int) -> list[Timing]:
    """An image method's forward and loss by part: projection, slot attention, decoder, losses."""
    features = inputs["features"]
    with torch.no_grad():
        out = model(**inputs, **plan.forward_options)
    parts = [time_part("encoder projection", model.project, [features], repeats)]
    attention = model.slot_attention
    num_iters = attention.num_iters
    first = time_part(
        "slot attention: keys, values, 1st iteration",
        lambda inputs, slots: attention(inputs, slots, num_iters=1).slots,
        [out.inputs, out.init_slots],
        repeats,
    )
    all_iters = time_part(
        "slot attention", lambda inputs, slots: attention(inputs, slots).slots, [out.inputs, out.init_slots], repeats
    )
    further = difference(f"slot attention: each further iteration (x{num_iters - 1})", all_iters, [first])
    further = difference(further.name, further, [], scale=1 / max(num_iters - 1, 1))
    further.count = num_iters - 1
    parts += [first, further]
    parts += decoder_parts(model.decoder, features, out.slots, repeats)

    def losses(recon: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        return method.objective(dataclasses.replace(out, recon=recon, attn=attn), plan, cfg).loss

    parts.append(time_part("losses", losses, [out.recon, out.attn], repeats))
    return parts


def video_parts(model, method, plan, cfg, inputs: dict[str, torch.Tensor], repeats: int) -> list[Timing]:
    """A video method's forward and loss by part (features (B, T, N, C)): the projection of all B*T frames, slot
    attention on frame 0 (all its iterations) and on each later frame (one iteration), the transitioner's query
    for each later frame (timed at the last frame, where its window is fullest), the decoder over all B*T frames
    as images, the losses. The initializer's query for frame 0 is left in "not in a part"."""
    features = inputs["features"]
    with torch.no_grad():
        out = model(**inputs, **plan.forward_options)
    frames = features.shape[1]
    later = max(frames - 1, 1)
    parts = [time_part(f"encoder projection ({frames} frames)", model.project, [features.flatten(0, 1)], repeats)]
    attention = model.slot_attention
    parts.append(
        time_part(
            f"slot attention: frame 0 ({attention.num_iters} iterations)",
            lambda inputs, query: attention(inputs, query).slots,
            [out.inputs[:, 0], out.queries[:, 0]],
            repeats,
        )
    )
    each = time_part(
        f"slot attention: each later frame (x{later}, 1 iteration)",
        lambda inputs, query: attention(inputs, query, num_iters=1).slots,
        [out.inputs[:, -1], out.queries[:, -1]],
        repeats,
    )
    each.count = later
    transit = time_part(
        f"transitioner: each later frame (x{later})",
        model.transitioner,
        [out.slots[:, :-1], out.inputs],
        repeats,
    )
    transit.count = later
    parts += [each, transit]
    parts += decoder_parts(model.decoder, features.flatten(0, 1), out.slots.flatten(0, 1), repeats)

    def losses(recon: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        return method.objective(dataclasses.replace(out, recon=recon, slots=slots), plan, cfg).loss

    parts.append(time_part("losses", losses, [out.recon, out.slots], repeats))
    return parts


def profile(config: str, overrides: list[str], batch_size: int, repeats: int) -> tuple[list[Timing], Timing]:
    """The parts of one step and the whole step (its forward_ms holds the step's ms, its FLOPs the step's)."""
    torch.manual_seed(0)
    cfg = load_config(config, overrides)
    method = method_of(cfg)
    plan = method.final_plan(cfg)
    model = build_model(cfg).train()
    grid = model.backbone.grid_size(cfg.data.image_size)
    video = cfg.model.method.video
    frames = (cfg.data.clip_length,) if video else ()
    features = torch.randn(batch_size, *frames, grid[0] * grid[1], model.backbone.feature_dim)
    inputs = {"features": features}
    if getattr(model, "conditional", False):  # frame 0's boxes (B, T, K, 4), normalised ltrb, set the queries
        corner = torch.rand(batch_size, *frames, cfg.model.num_slots, 2) * 0.6
        inputs["boxes"] = torch.cat([corner, corner + 0.1 + 0.3 * torch.rand_like(corner)], -1)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg.optim, CPU)
    for group in optimizer.param_groups:
        group["lr"] = cfg.optim.lr  # the loop sets it per step; any value costs the same
    precision = Precision("fp32", CPU.type)
    scaler = torch.amp.GradScaler(CPU.type, enabled=False)

    def step() -> None:
        optimisation_step(
            model, inputs, method=method, plan=plan, cfg=cfg, optimizer=optimizer, scaler=scaler,
            params=params, precision=precision,
        )  # fmt: skip

    whole_times = [time_call("whole step", step, repeats).forward_ms]
    parts = (video_parts if video else image_parts)(model, method, plan, cfg, inputs, repeats)

    for p in params:
        p.grad = torch.randn_like(p)
    parts.append(
        time_call("gradient-norm clip", lambda: torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip), repeats)
    )

    def adam() -> None:
        grads = [p.grad for p in params]
        optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        optimizer.step()

    parts.append(time_call("Adam step", adam, repeats))
    whole_times.append(time_call("whole step", step, repeats).forward_ms)  # before and after: a load spell hits both
    whole = Timing("whole step", statistics.mean(whole_times), 0)
    whole_flop = counted(step)[1]
    rest = Timing(
        "not in a part (whole step less the parts)",
        whole.forward_ms - sum(p.step_ms for p in parts),
        whole_flop - sum(p.step_flop for p in parts),
    )
    return [*parts, rest], Timing("whole step", whole.forward_ms, whole_flop)


def rate_cells(ms: float | None, flop: int, ceiling: float) -> list[str]:
    """ms, GFLOP, GFLOP/s, % of the ceiling, ms over the ceiling."""
    if ms is None:
        return ["", "", "", "", ""]
    if flop <= 0 or ms <= 0:
        return [f"{ms:.1f}", "0", "", "", f"{ms:.1f}"]
    rate = flop / ms / 1e6
    over = ms - flop / ceiling / 1e6
    return [f"{ms:.1f}", f"{flop / 1e9:.2f}", f"{rate:.0f}", f"{100 * rate / ceiling:.0f} %", f"{over:.1f}"]


def table(parts: list[Timing], whole: Timing, ceiling: float) -> list[str]:
    lines = [
        "| part | pass | ms | share of step | GFLOP | GFLOP/s | of ceiling | ms over ceiling |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for part in parts:
        passes = [("forward" if part.backward_ms is not None else "", part.forward_ms, part.forward_flop)]
        if part.backward_ms is not None:
            passes.append(("backward", part.backward_ms, part.backward_flop))
        for name, ms, flop in passes:
            ms_, gflop, rate, share_of_ceiling, over = rate_cells(ms, flop, ceiling)
            lines.append(
                f"| {part.name} | {name} | {ms_} | {100 * ms / whole.forward_ms:.0f} % | {gflop} | {rate} "
                f"| {share_of_ceiling} | {over} |"
            )
    ms_, gflop, rate, share_of_ceiling, over = rate_cells(whole.forward_ms, whole.forward_flop, ceiling)
    lines.append(f"| **whole step** | both | {ms_} | 100 % | {gflop} | {rate} | {share_of_ceiling} | {over} |")
    return lines


def furthest(parts: list[Timing], ceiling: float) -> str:
    """The part (both passes) with the most ms over the ceiling, and its rate."""

    def over(part: Timing) -> float:
        return part.step_ms - part.step_flop / ceiling / 1e6

    worst = max(parts[:-1], key=over)  # the last row is the remainder, not a part
    ms, flop = worst.step_ms, worst.step_flop
    rate = f"{flop / ms / 1e6:.0f} GFLOP/s" if flop > 0 else "no counted FLOPs"
    return f"furthest from the ceiling: {worst.name}, {over(worst):.0f} ms over it ({ms:.0f} ms, {rate})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "dias-coco.yaml"))
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per part and pass; medians kept")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gemm-size", type=int, default=2048, help="side of the matrix product of the ceiling")
    parser.add_argument("--note", default="", help="a sentence on the machine's state (e.g. its load)")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/step_profile_<cpu>.md")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall", help=CLOCK_HELP)
    parser.add_argument("--malloc", choices=MALLOC_SETTINGS, default="kept", help="kept: as the dias command sets it")
    args = parser.parse_args()
    malloc = set_malloc(args.malloc)
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    cpu = cpu_name()
    lines = [
        "# Where a training step's time goes (CPU, fp32, features given)",
        "",
        f"{cpu}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.clock} clock, "
        f"{Path(args.config).name}, malloc {malloc}, "
        f"{datetime.date.today().isoformat()}; medians of {args.repeats} timed calls per part and pass. "
        f"Load average when it started: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}. {args.note}".strip(),
        "",
        f"    {shlex.join(['python', 'benchmarks/step_profile.py', *without_note(sys.argv[1:])])}",
        "",
    ]
    cfg = load_config(args.config, args.override)
    video = cfg.model.method.video
    clips = f" clips x {cfg.data.clip_length} frames" if video else ""
    for batch_size in args.batch_sizes:
        gemm = [matmul_gflops(args.gemm_size, clock=clock)]
        parts, whole = profile(args.config, args.override, batch_size, args.repeats)
        gemm.append(matmul_gflops(args.gemm_size, clock=clock))
        ceiling = statistics.median(gemm)
        lines += [
            f"## Batch {batch_size}{clips}",
            "",
            *table(parts, whole, ceiling),
            "",
            f"Ceiling: a {args.gemm_size}x{args.gemm_size} fp32 matrix product at {ceiling:.0f} GFLOP/s "
            f"(before and after: {gemm[0]:.0f}, {gemm[1]:.0f}). {furthest(parts, ceiling)}.",
            "",
        ]
        print("\n".join(lines[-(len(parts) * 2 + 6) :]), flush=True)
    text = "\n".join(lines)
    stem = "" if Path(args.config).name == "dias-coco.yaml" else f"{Path(args.config).stem}_"
    out = args.out or REPO / "benchmarks" / "results" / f"step_profile_{stem}{slug(cpu)}.md"
    atomic_write_bytes(out, text.encode())
    print(f"written to {out}")


if __name__ == "__main__":
    main()
