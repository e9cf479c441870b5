"""The visual report of `dias eval --viz N`: one PNG panel per image and one self-contained report.html.

A panel shows [input | ground truth | prediction], then one attention strip (a heat map per slot) for
each slot-attention iteration and one for the decoder, so the effect of self-distillation (the first
iteration learning from the last) can be seen slot by slot.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dias.baselines import BASELINE_TITLES
from dias.data.transforms import resize_mask
from dias.io import atomic_write_bytes
from dias.metrics import METRIC_NAMES, METRIC_TITLES
from dias.viz.panels import attention_strip, caption, hstack, overlay, to_pil, upscale, vstack
from dias.viz.tables import Column, Table, format_fraction, to_html

if TYPE_CHECKING:  # the type only: viz renders what a method returns and imports no method
    from dias.methods.base import SlotOutput

VIZ_DIR_NAME = "viz"
REPORT_FILE_NAME = "report.html"
PANEL_GAP = 4
TILE_GAP = 2
TILE_SIZE = 96  # pixels per slot in an attention strip
MIN_DISPLAY_SIZE = 192  # smaller inputs are enlarged (nearest neighbour) in the panels


@dataclass
class VizItem:
    index: int  # dataset index
    image: torch.Tensor  # (3, H, W) uint8
    gt: torch.Tensor  # (H, W) instance ids
    pred: torch.Tensor  # (H, W) predicted slot per pixel
    attn: torch.Tensor  # (T, K, N) slot attention, one map per iteration
    decoder_attn: torch.Tensor  # (K, N)
    mask_source: str
    keep: torch.Tensor | None = None  # (K,) bool slots kept by pruning (full method), else None


class VizCollector:
    """A batch hook for `evaluate` that keeps what the first `num_images` panels need, on the CPU."""

    def __init__(self, num_images: int, mask_source: str = "decoder"):
        self.num_images = num_images
        self.mask_source = mask_source
        self.items: list[VizItem] = []

    def __call__(self, batch: dict[str, Any], out: SlotOutput, pred: torch.Tensor) -> None:
        for b in range(min(self.num_images - len(self.items), len(pred))):
            self.items.append(
                VizItem(
                    index=int(batch["index"][b]),
                    image=batch["image"][b].cpu().clone(),
                    gt=batch["mask"][b].cpu().clone(),
                    pred=pred[b].cpu().clone(),
                    attn=out.attn[:, b].float().cpu().clone(),
                    decoder_attn=out.decoder_attn[b].float().cpu().clone(),
                    mask_source=self.mask_source,
                    keep=None if out.keep is None else out.keep[b].cpu().clone(),
                )
            )


def render_panel(item: VizItem, tile_size: int = TILE_SIZE) -> torch.Tensor:
    """(3, H', W') uint8: captioned input, ground-truth and predicted overlays, then the attention strips."""
    size = max(item.image.shape[-1], MIN_DISPLAY_SIZE)
    image = upscale(item.image, size)
    gt, pred = resize_mask(item.gt, size), resize_mask(item.pred, size)
    top = hstack(
        [
            caption(image, "input"),
            caption(overlay(image, gt), "ground truth"),
            caption(overlay(image, pred), f"prediction ({item.mask_source})"),
        ],
        gap=PANEL_GAP,
    )
    strips = [
        caption(attention_strip(attn, tile_size, TILE_GAP), f"slot attention, iteration {t + 1}")
        for t, attn in enumerate(item.attn)
    ]
    strips.append(caption(attention_strip(item.decoder_attn, tile_size, TILE_GAP), "decoder attention"))
    if item.keep is not None:
        kept = int(item.keep.sum())
        label = f"pruning: {kept} of {len(item.keep)} slots kept (green), the others merged away (grey)"
        strips.append(caption(keep_strip(item.keep, tile_size, TILE_GAP), label))
    return vstack([top, *strips], gap=PANEL_GAP)


def keep_strip(keep: torch.Tensor, tile_size: int, gap: int = 0) -> torch.Tensor:
    """(3, tile, K tiles) uint8: one tile per slot, green where kept, grey where pruned, aligned with the strips."""
    colours = {True: (60, 170, 80), False: (90, 90, 90)}
    tiles = [
        torch.tensor(colours[bool(k)], dtype=torch.uint8).view(3, 1, 1).expand(3, tile_size, tile_size) for k in keep
    ]
    return hstack(tiles, gap=gap)


def png_bytes(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_visual_report(
    out_dir: str | Path,
    items: list[VizItem],
    report: dict[str, Any],
    per_image: dict[int, dict[str, float]] | None = None,
    sections: tuple[str, ...] = (),
) -> Path:
    """Write OUT/viz/image-<index>.png for each item and OUT/report.html embedding them, then `sections` (HTML
    blocks, such as the demo's photo panel); returns the html path."""
    out_dir = Path(out_dir)
    figures = [
        saved_figure(
            out_dir,
            f"image-{item.index:06d}.png",
            render_panel(item),
            f"image {item.index}",
            (per_image or {}).get(item.index, {}),
        )
        for item in items
    ]
    scores = to_html(scores_table(report["metrics"], report.get("baselines")))
    html_page = page(report, figures, scores=scores + BASELINE_NOTE, heading="Images", sections=sections)
    return write_page(out_dir, html_page)


def saved_figure(
    out_dir: Path, name: str, image: torch.Tensor, label: str, scores: dict[str, float], note: str = ""
) -> str:
    """Write `image` as OUT/viz/NAME and return its <figure>, captioned `label` and its `scores` (+ `note`)."""
    data = png_bytes(image)
    atomic_write_bytes(out_dir / VIZ_DIR_NAME / name, data)
    text = ", ".join(f"{METRIC_TITLES[k]} {format_fraction(v)}" for k, v in scores.items() if v == v)
    return figure(name, data, label + (f": {text}{note}" if text else ""))


def write_page(out_dir: Path, html_page: str) -> Path:
    """Write OUT/report.html (atomically); returns its path."""
    path = out_dir / REPORT_FILE_NAME
    atomic_write_bytes(path, html_page.encode("utf-8"))
    return path


def scores_table(
    metrics: dict[str, float | None], baselines: dict[str, dict[str, float | None]] | None = None
) -> Table:
    """The model's mean metrics and, one row each below them, its baselines': ×100, "–" where no image had one."""
    columns = [Column("segmentation"), *(Column(METRIC_TITLES[name], align="right") for name in METRIC_NAMES)]
    rows = [("model", metrics)] + [(BASELINE_TITLES.get(b, b), m) for b, m in (baselines or {}).items()]
    return Table(
        columns=columns,
        rows=[[label, *(format_fraction(values.get(name)) for name in METRIC_NAMES)] for label, values in rows],
    )


BASELINE_NOTE = """
<p>The baselines are scored on the same images, token grid, upsampling and metrics as the model: a number
means something only where it beats them.</p>"""


def figure(name: str, data: bytes, text: str) -> str:
    """An HTML <figure> embedding PNG bytes, captioned with `text` (escaped)."""
    image = base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img alt="{name}" src="data:image/png;base64,{image}">'
        f"<figcaption>{html.escape(text)}</figcaption></figure>"
    )


def page(
    report: dict[str, Any], figures: list[str], *, scores: str, heading: str, sections: tuple[str, ...] = ()
) -> str:
    """The self-contained report.html: the scores section (HTML), the eval card, the figures, then `sections`."""
    card = report["card"]
    title = f"dias eval: {card.get('dataset', '')} {card.get('split', '')} ({card.get('mask_source', '')})"
    card_table = to_html(
        Table(
            columns=[Column("field"), Column("value")],
            rows=[[str(k), v if isinstance(v, str) else json.dumps(v)] for k, v in card.items()],
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }}
figure {{ margin: 0 0 1.5em 0; }}
img {{ image-rendering: pixelated; max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Metrics (&times;100)</h2>
{scores}
<h2>Eval card</h2>
{card_table}
<h2>{html.escape(heading)}</h2>
{"".join(figures)}
{"".join(sections)}
</body></html>
"""
