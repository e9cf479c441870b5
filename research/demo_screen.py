"""Fast screening of demo designs: scenes and features in memory, the DIAS head trained on cached tokens.

Frozen history (research/): kept as it was when its results were made, so that a finding can be read next
to the code that produced it. Not maintained, not run by the tests, and not guaranteed to run against the
current package; to measure the package, use benchmarks/. It deliberately reimplements what it screened
(colour and chroma codes, position channels, ideal tokens) and patches the synthetic generator's module
globals to change the scenes: the designs that survived live in the package now (dias.modules.backbone
ColourCodes, dias.data.synthetic), and this script is not their reference.

Not the shipped pipeline (no crops, no LMDB, no trainer): a screen to rank designs before a real
`research/demo_curve.py` run. The model, losses and schedules are the package's own.

    python research/demo_screen.py --steps 1500 --position 0.5 model.decoder.num_layers=1
    python research/demo_screen.py --steps 1000 --kmeans --oracle 0.3   # ideal tokens: is it the features?

`--oracle W` replaces the backbone tokens by ideal ones (one random code per object and image, mixed
by the true masks' area in each patch, + position channels of weight W): an upper bound on what any
frozen demo backbone could hand the model.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from dias.baselines import BASELINE_NAMES, BASELINE_TITLES, baseline_masks
from dias.config import load_config
from dias.data import synthetic
from dias.demo.run import demo_config_path
from dias.losses import reconstruction_loss
from dias.masks import masks_from_attention, select_masks
from dias.methods import build_model, method_of
from dias.metrics import nanmean, score
from dias.schedules import lr_at
from dias.schema import warmup_steps


def render(count: int, seed: int, split_code: int, size: int):
    images, masks = [], []
    for index in range(count):
        image, mask, _ = synthetic.render_scene(np.random.default_rng([seed, split_code, index]), size)
        images.append(image)
        masks.append(mask.astype(np.int64))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.stack(masks))


def baseline_scores(
    name: str, tokens: torch.Tensor, masks: torch.Tensor, num_clusters: int, grid: int
) -> tuple[float, float]:
    """FG-ARI and mBO of one of the evaluation's baselines (dias.baselines) on these tokens and masks."""
    onehot = baseline_masks(name, tokens, num_slots=num_clusters, grid_size=(grid, grid), seed=0)
    scores = score(masks_from_attention(onehot, masks.shape[-1]), masks)
    return nanmean(scores["fg_ari"].numpy()), nanmean(scores["mbo"].numpy())


def position_features(grid: int, dim: int, freqs=(1, 2, 4)) -> torch.Tensor:
    """(1, N, dim): sin/cos of x and y at a few frequencies, spread over dim by a fixed orthogonal map."""
    c = (torch.arange(grid) + 0.5) / grid
    y, x = torch.meshgrid(c, c, indexing="ij")
    parts = []
    for f in freqs:
        for v in (x, y):
            parts += [torch.sin(math.pi * f * v), torch.cos(math.pi * f * v)]
    p = torch.stack(parts, -1).flatten(0, 1)  # (N, F)
    basis, _ = torch.linalg.qr(torch.randn(dim, p.shape[1], generator=torch.Generator().manual_seed(1)))
    return (p @ basis.T * math.sqrt(dim / p.shape[1]))[None]


def area_fractions(onehot: torch.Tensor, grid: int) -> torch.Tensor:
    """One-hot instance masks (B, H, W, M) -> (B, N, M): the share of each token's pixels per object."""
    return torch.nn.functional.adaptive_avg_pool2d(onehot.permute(0, 3, 1, 2), grid).flatten(2).transpose(1, 2)


def oracle_tokens(
    masks: torch.Tensor, grid: int, dim: int, seed: int, images: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, N, dim): each token the area-weighted mean of random unit-scale codes, one per object and image.

    With `images`, each pixel's share is scaled by its brightness relative to the brightest pixel of its
    object (or background), so that shading scales the tokens as it scales colour codes.
    """
    num_ids = int(masks.max()) + 1
    onehot = torch.nn.functional.one_hot(masks, num_ids).float()  # (B, H, W, M)
    if images is not None:
        norm = (images.float() / 255).norm(dim=1)  # (B, H, W)
        peak = torch.einsum("bhw,bhwm->bhwm", norm, onehot).amax((1, 2)).clamp_min(1e-3)  # (B, M)
        onehot = onehot * (norm[..., None] / peak[:, None, None]).clamp(max=1.0)
    fractions = area_fractions(onehot, grid)
    codes = torch.randn(masks.shape[0], num_ids, dim, generator=torch.Generator().manual_seed(seed))
    return fractions @ codes


def part_tokens(masks: torch.Tensor, grid: int, dim: int) -> torch.Tensor:
    """(B, N, dim): where in its object each token sits, the same fixed code for every object and image.

    Per object: its pixel centroid and size (sqrt of its area); per token: the Fourier features of its
    centre relative to them, mixed by area over the objects it covers and spread over dim by a fixed
    orthogonal map, like the within-object variation of real ViT tokens (parts) that k-means splits on.
    """
    size = masks.shape[-1]
    num_ids = int(masks.max()) + 1
    onehot = torch.nn.functional.one_hot(masks, num_ids).float()  # (B, H, W, M)
    area = onehot.sum((1, 2)).clamp_min(1)  # (B, M)
    coords = torch.arange(size).float() + 0.5
    cy = torch.einsum("bhwm,h->bm", onehot, coords) / area
    cx = torch.einsum("bhwm,w->bm", onehot, coords) / area
    scale = area.sqrt()
    centres = (torch.arange(grid).float() + 0.5) * size / grid
    ty, tx = torch.meshgrid(centres, centres, indexing="ij")
    ry = (ty.flatten()[None, :, None] - cy[:, None]) / scale[:, None]  # (B, N, M)
    rx = (tx.flatten()[None, :, None] - cx[:, None]) / scale[:, None]
    feats = []
    for f in (1, 2):
        for r in (rx, ry):
            feats += [torch.sin(math.pi * f * r), torch.cos(math.pi * f * r)]
    feats = torch.stack(feats, -1)  # (B, N, M, F)
    mixed = torch.einsum("bnm,bnmf->bnf", area_fractions(onehot, grid), feats)
    basis, _ = torch.linalg.qr(torch.randn(dim, mixed.shape[-1], generator=torch.Generator().manual_seed(2)))
    return mixed @ basis.T * math.sqrt(dim / mixed.shape[-1])


def colour_code_tokens(
    images: torch.Tensor, patch: int, dim: int, kappa: float, *, brightness: bool = True
) -> torch.Tensor:
    """(B, N, dim) from images alone: each pixel's colour direction soft-assigned to dim fixed anchor
    directions (exp(kappa * (cos - 1)), nearly one-hot for a large kappa), times its brightness, pooled per
    patch. Two hues give nearly orthogonal codes; brightness (shading) only scales a token, which a
    LayerNorm divides out and k-means on the raw tokens does not. Without `brightness` every pixel counts
    the same: the tokens say which colours a patch holds, not how lit they are."""
    rgb = images.float() / 255
    norm = rgb.norm(dim=1, keepdim=True).clamp_min(1e-3)
    anchors = torch.randn(dim, 3, generator=torch.Generator().manual_seed(3)).abs()
    anchors = anchors / anchors.norm(dim=1, keepdim=True)
    code = torch.exp(kappa * (torch.einsum("kc,bchw->bkhw", anchors, rgb / norm) - 1))
    weighted = norm * code if brightness else code
    return torch.nn.functional.avg_pool2d(weighted, patch).flatten(2).transpose(1, 2)


def shuffle_channels(tokens: torch.Tensor, seed: int) -> torch.Tensor:
    """(B, N, C) with the channels of each image permuted at random: what the tokens say within an image
    is kept (k-means is blind to it), what a channel means from one image to the next is not."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(tokens.shape[-1], generator=generator) for _ in range(len(tokens))])
    return tokens.gather(2, order[:, None].expand_as(tokens))


def hue_palette(count: int) -> dict[str, tuple[int, int, int]]:
    """`count` evenly spaced hues at saturation 0.8 and value 0.9, so that object colours vary continuously."""
    import colorsys

    return {
        f"hue{i}": tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(i / count, 0.8, 0.9)) for i in range(count)
    }


def write_panels(path, images, masks, pred, pred0, decoder_attn) -> None:
    """Rows: image | ground truth | decoder masks | first-iteration masks | decoder attention per slot."""
    from dias.viz.panels import attention_strip, grid, overlay, to_pil

    rows = []
    for i in range(len(images)):
        size = images.shape[-1]
        attn = decoder_attn[i].unflatten(-1, (int(math.isqrt(decoder_attn.shape[-1])),) * 2)
        rows.append([
            images[i], overlay(images[i], masks[i]), overlay(images[i], pred[i]), overlay(images[i], pred0[i]),
            attention_strip(attn, size),
        ])  # fmt: skip
    to_pil(grid(rows)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--num-train", type=int, default=3000)
    parser.add_argument("--num-val", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--kmeans", action="store_true", help="print the baselines (grid, voronoi, k-means) first")
    parser.add_argument("--position", type=float, default=0.0, help="weight of Fourier position channels")
    parser.add_argument("--plain", action="store_true", help="gradient backgrounds only")
    parser.add_argument("--palette", type=int, default=0, help="use the first N palette colours")
    parser.add_argument("--hues", type=int, default=0, help="a palette of N evenly spaced saturated hues instead")
    parser.add_argument("--objects", type=int, nargs=2, default=None, help="min and max objects per scene")
    parser.add_argument(
        "--shading", type=float, nargs=2, default=None, help="range of the darkest side (synthetic.DARKEST_SIDE)"
    )
    parser.add_argument(
        "--oracle",
        type=float,
        default=None,
        help="replace the tokens by per-object random codes (pooled with the true masks) plus this much position",
    )
    parser.add_argument(
        "--colour-codes",
        type=float,
        default=None,
        metavar="KAPPA",
        help="tokens from colour_code_tokens with this kappa instead of the backbone's",
    )
    parser.add_argument(
        "--oracle-shading", action="store_true", help="with --oracle: scale the codes by each pixel's brightness"
    )
    parser.add_argument("--chroma", action="store_true", help="with --colour-codes: leave out the brightness (shading)")
    parser.add_argument("--shuffle-channels", action="store_true", help="permute each image's token channels at random")
    parser.add_argument("--parts", type=float, default=0.0, help="with --oracle: weight of within-object codes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2: one screen on the 2 cores)")
    parser.add_argument("--viz", default=None, help="write a PNG of 6 val images with their masks here")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if (args.parts or args.oracle_shading) and args.oracle is None:
        parser.error("--parts and --oracle-shading need --oracle")
    if args.chroma and args.colour_codes is None:
        parser.error("--chroma needs --colour-codes")
    torch.set_num_threads(args.threads)
    cfg = load_config(demo_config_path(), [f"train.seed={args.seed}", *args.overrides])
    size = cfg.data.image_size
    if args.plain:
        synthetic.BACKGROUNDS = ("gradient",)
    if args.palette:
        synthetic.PALETTE = dict(list(synthetic.PALETTE.items())[: args.palette])
    if args.hues:
        synthetic.PALETTE = hue_palette(args.hues)
    if args.objects:
        synthetic.MIN_OBJECTS, synthetic.MAX_OBJECTS = args.objects
    if args.shading is not None:
        synthetic.DARKEST_SIDE = tuple(args.shading)
    t0 = time.time()
    train_images, train_masks = render(args.num_train, 0, 0, size)
    val_images, val_masks = render(args.num_val, 0, 1, size)
    torch.manual_seed(args.seed)
    model = build_model(cfg)
    with torch.no_grad():
        train_tokens = torch.cat([model.backbone(x) for x in train_images.split(256)])
        val_tokens = model.backbone(val_images)
    grid = int(math.isqrt(train_tokens.shape[1]))
    if args.colour_codes is not None:
        dim, patch = train_tokens.shape[-1], size // grid
        train_tokens = torch.cat(
            [
                colour_code_tokens(x, patch, dim, args.colour_codes, brightness=not args.chroma)
                for x in train_images.split(256)
            ]
        )
        val_tokens = colour_code_tokens(val_images, patch, dim, args.colour_codes, brightness=not args.chroma)
        scale = train_tokens.std()
        train_tokens, val_tokens = train_tokens / scale, val_tokens / scale
    if args.oracle is not None:
        dim = train_tokens.shape[-1]
        pos = args.oracle * position_features(grid, dim)
        train_tokens, val_tokens = (
            oracle_tokens(train_masks, grid, dim, 0, train_images if args.oracle_shading else None) + pos,
            oracle_tokens(val_masks, grid, dim, 1, val_images if args.oracle_shading else None) + pos,
        )
        if args.parts:
            train_tokens = train_tokens + args.parts * torch.cat(
                [part_tokens(m, grid, dim) for m in train_masks.split(500)]
            )
            val_tokens = val_tokens + args.parts * part_tokens(val_masks, grid, dim)
    if args.shuffle_channels:
        train_tokens, val_tokens = shuffle_channels(train_tokens, 0), shuffle_channels(val_tokens, 1)
    if args.position:
        pos = position_features(grid, train_tokens.shape[-1]) * args.position
        train_tokens, val_tokens = train_tokens + pos, val_tokens + pos
    print(f"data+features {time.time() - t0:.0f}s tokens {tuple(train_tokens.shape)} std {train_tokens.std():.2f}")
    if args.kmeans:
        for name in BASELINE_NAMES:
            fg_ari, mbo = baseline_scores(name, val_tokens, val_masks, cfg.model.num_slots, grid)
            print(f"{BASELINE_TITLES[name]}: FG-ARI {fg_ari:.3f} mBO {mbo:.3f}")
        # what slot attention's input LayerNorm sees: each token's scale (its brightness) divided out
        normed = torch.nn.functional.layer_norm(val_tokens, val_tokens.shape[-1:])
        fg_ari, mbo = baseline_scores("kmeans", normed, val_masks, cfg.model.num_slots, grid)
        print(f"k-means on the layer-normalised tokens (not an evaluation baseline): FG-ARI {fg_ari:.3f} mBO {mbo:.3f}")
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg.optim
    optimizer = torch.optim.Adam(params, lr=0.0, betas=o.betas, eps=o.eps)
    b = cfg.data.batch_size
    total = cfg.train.total_steps
    warmup, method = warmup_steps(cfg), method_of(cfg)
    start = time.time()
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                torch.manual_seed(0)
                out = model(features=val_tokens)
                pred = masks_from_attention(
                    select_masks(decoder_attn=out.decoder_attn, attn=out.attn, mask_source=cfg.eval.mask_source), size
                )
                s = score(pred, val_masks)
                pred0 = masks_from_attention(out.attn[0], size)
                s0 = score(pred0, val_masks)
                used = (torch.nn.functional.one_hot(pred.flatten(1), cfg.model.num_slots).sum(1) > 0).sum(1)
                # How much the decoder needs the slots: its loss with another image's slots, on a training mask.
                model.decoder.train()
                torch.manual_seed(1)
                own = reconstruction_loss(model.decoder(out.features, out.slots).recon, out.features)
                torch.manual_seed(1)
                other = reconstruction_loss(model.decoder(out.features, out.slots.roll(1, 0)).recon, out.features)
                model.decoder.eval()
            print(
                f"step {step:5d} {time.time() - start:6.0f}s  FG-ARI {nanmean(s['fg_ari'].numpy()):.3f} "
                f"mBO {nanmean(s['mbo'].numpy()):.3f}  attn0 FG-ARI {nanmean(s0['fg_ari'].numpy()):.3f} "
                f"mBO {nanmean(s0['mbo'].numpy()):.3f}  slots used {used.float().mean():.2f}  "
                f"recon {own:.4f} with other slots {other:.4f}",
                flush=True,
            )
            model.train()
        if step == args.steps:
            if args.viz:
                write_panels(args.viz, val_images[:6], val_masks[:6], pred[:6], pred0[:6], out.decoder_attn[:6])
            break
        index = torch.randint(len(train_tokens), (b,), generator=generator)
        tokens = train_tokens[index]
        if cfg.data.flip:
            flip = torch.rand(b, generator=generator) < 0.5
            flipped = tokens.unflatten(1, (grid, grid)).flip(2).flatten(1, 2)
            tokens = torch.where(flip[:, None, None], flipped, tokens)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, o.lr, warmup, total, o.lr * o.final_lr_ratio)
        plan = method.plan(cfg, step)
        loss = method.objective(model(features=tokens, **plan.forward_options), plan, cfg).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        optimizer.step()


if __name__ == "__main__":
    main()
