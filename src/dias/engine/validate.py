"""Validation during training: the evaluation engine's metrics when it is installed, else a minimal pass.

The minimal pass scores the same masks as the official protocol (decoder attention, bilinear upsampling,
argmax over K; SPEC §10) and adds the validation loss at distillation weight 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from dias.losses import distillation_loss, reconstruction_loss, select_distillation_pair
from dias.metrics import nanmean, score
from dias.model import DIAS, attention_to_segmentation


def masks_from_output(out, mask_source: str) -> torch.Tensor:
    """(B, K, N) masks: the decoder's cross-attention ("decoder") or a slot-attention iteration ("attn:T")."""
    if mask_source == "decoder":
        return out.decoder_attn
    if mask_source.startswith("attn:"):
        return out.attn[int(mask_source.removeprefix("attn:"))]
    raise ValueError(f"unknown eval.mask_source {mask_source!r}; choose decoder, attn:0 or attn:-1")


@torch.inference_mode()
def minimal_validate(
    model: DIAS,
    loader: DataLoader,
    mask_source: str = "decoder",
    seed: int = 0,
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    distill_form: str = "prob",
) -> dict[str, float]:
    """Mean val loss, ARI, FG-ARI, mBO and mIoU over the whole loader."""
    torch.manual_seed(seed)  # the initializer's noise is sampled in evaluation too
    scores: dict[str, list[torch.Tensor]] = {"ari": [], "fg_ari": [], "mbo": [], "miou": []}
    losses = []
    for batch in loader:
        if "image" not in batch:
            continue
        with autocast():
            out = model(images=batch["image"].to(device))
        loss = reconstruction_loss(out.recon, out.features) + distillation_loss(
            *select_distillation_pair(out.attn), form=distill_form
        )
        losses.append(float(loss))
        pred = attention_to_segmentation(masks_from_output(out, mask_source).float(), batch["mask"].shape[-1])
        for key, values in score(pred.cpu(), batch["mask"]).items():
            scores[key].append(values)
    means = {key: nanmean(torch.cat(values)) for key, values in scores.items() if values}
    means["val_loss"] = sum(losses) / max(len(losses), 1)
    return means


def validate(
    model: DIAS, loader: DataLoader, mask_source: str, seed: int, device: torch.device, precision: str = "fp32"
) -> dict[str, float]:
    """Dataset means {"ari", "fg_ari", "mbo", "miou"}; the model returns to its mode, the caller's RNG is untouched.

    Uses dias.engine.evaluate (imported lazily) when it is there, else `minimal_validate`.
    """
    was_training = model.training
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            try:
                from dias.engine.evaluate import evaluate
            except ImportError:
                evaluate = None
            if evaluate is not None:
                result = evaluate(
                    model,
                    loader,
                    mask_source=mask_source,
                    seed=seed,
                    device=device,
                    progress=False,
                    precision=precision,
                )
                return {name: float(value) for name, value in result.means().items()}
            model.eval()
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

            def autocast():
                return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

            return minimal_validate(model, loader, mask_source, seed, device, autocast=autocast)
    finally:
        model.train(was_training)
