"""The visual report of `dias eval --viz N` on video: one PNG panel per clip and one self-contained report.html.

A clip panel has one row per frame (at most MAX_FRAMES, evenly spaced, first and last included):
[input | ground truth | prediction | the masks' attention, one heat-map tile per slot]. A slot index and a
ground-truth id keep one palette colour in every frame, so a slot that swaps objects shows as a colour
change down the prediction column, and its tile column in the strips follows it over time. A colour key
above the strips gives each slot's colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dias.baselines import BASELINE_TITLES
from dias.data.transforms import resize_mask
from dias.metrics import METRIC_NAMES, METRIC_TITLES
from dias.video_metrics import (
    VIDEO_CONVENTION_LABELS,
    VIDEO_CONVENTION_TITLES,
    VIDEO_CONVENTIONS,
    convention_metrics,
)
from dias.viz.gallery import (
    BASELINE_NOTE,
    PANEL_GAP,
    TILE_GAP,
    page,
    saved_figure,
    write_page,
)
from dias.viz.panels import PALETTE, attention_strip, caption, hstack, overlay, upscale, vstack
from dias.viz.tables import Column, Table, format_fraction, to_html

if TYPE_CHECKING:  # the type only: viz renders what a method returns and imports no method
    from dias.methods.base import SlotOutput

MAX_FRAMES = 8  # longer clips show this many frames, evenly spaced
FRAME_SIZE = 128  # pixels per frame and per slot tile; smaller frames are enlarged (nearest neighbour)


@dataclass
class ClipItem:
    number: int  # the clip's row in the evaluation (clips of one video share its dataset index)
    index: int  # dataset index of the clip's video
    start: int  # the clip's first frame in its video
    video: torch.Tensor  # (T, 3, H, W) uint8
    gt: torch.Tensor  # (T, H, W) instance ids, kept across frames
    pred: torch.Tensor  # (T, H, W) predicted slot per pixel
    masks: torch.Tensor  # (T, K, N) the attention the prediction was taken from
    mask_source: str


class ClipCollector:
    """A batch hook for `evaluate` on clips that keeps what the first `num_clips` panels need, on the CPU."""

    def __init__(self, num_clips: int, mask_source: str = "decoder"):
        self.num_clips = num_clips
        self.mask_source = mask_source
        self.items: list[ClipItem] = []
        self.num_seen = 0

    def __call__(self, batch: dict[str, Any], out: SlotOutput, pred: torch.Tensor) -> None:
        masks = out.decoder_attn if self.mask_source == "decoder" else out.attn  # (B, T, K, N), as scored
        for b in range(min(self.num_clips - len(self.items), len(pred))):
            self.items.append(
                ClipItem(
                    number=self.num_seen + b,
                    index=int(batch["index"][b]),
                    start=int(batch["start"][b]) if "start" in batch else 0,
                    video=batch["video"][b].cpu().clone(),
                    gt=batch["masks"][b].cpu().clone(),
                    pred=pred[b].cpu().clone(),
                    masks=masks[b].float().cpu().clone(),
                    mask_source=self.mask_source,
                )
            )
        self.num_seen += len(pred)


def sample_frames(num_frames: int, max_frames: int = MAX_FRAMES) -> list[int]:
    """All frames of a short clip; of a longer one, `max_frames` evenly spaced, the first and last included."""
    if num_frames <= max_frames:
        return list(range(num_frames))
    return sorted({round(i * (num_frames - 1) / (max_frames - 1)) for i in range(max_frames)})


def slot_key(num_slots: int, size: int, gap: int = 0) -> torch.Tensor:
    """(3, size // 4, K tiles) uint8: slot k's palette colour, aligned with an attention strip's tiles."""
    tiles = [PALETTE[k % len(PALETTE)].view(3, 1, 1).expand(3, max(size // 4, 1), size) for k in range(num_slots)]
    return hstack(tiles, gap=gap)


def render_clip_panel(item: ClipItem, frame_size: int = FRAME_SIZE, max_frames: int = MAX_FRAMES) -> torch.Tensor:
    """(3, H', W') uint8: a colour key, then per shown frame [input | ground truth | prediction | attention strip]."""
    size = max(item.video.shape[-1], frame_size)
    num_slots = item.masks.shape[1]
    source = "decoder attention" if item.mask_source == "decoder" else f"attention ({item.mask_source})"
    key = caption(slot_key(num_slots, size, TILE_GAP), f"slot colours 0..{num_slots - 1}")
    header = hstack([torch.full((3, 1, 3 * (size + PANEL_GAP)), 255, dtype=torch.uint8), key])
    rows = [header]
    for t in sample_frames(item.video.shape[0], max_frames):
        image = upscale(item.video[t], size)
        frame = item.start + t
        rows.append(
            hstack(
                [
                    caption(image, f"frame {frame}"),
                    caption(overlay(image, resize_mask(item.gt[t], size)), "ground truth"),
                    caption(overlay(image, resize_mask(item.pred[t], size)), "prediction"),
                    caption(attention_strip(item.masks[t], size, TILE_GAP), f"{source}, one tile per slot"),
                ],
                gap=PANEL_GAP,
            )
        )
    return vstack(rows, gap=PANEL_GAP)


def clip_length_text(card: dict[str, Any]) -> str:
    """How long the scored clips were, from an eval card: "2-frame clips" or "whole videos (24 frames)"."""
    frames = card.get("clip_frames") or []
    length = card.get("eval_clip_length")
    if length is not None:
        return f"{length}-frame clips"
    counts = f" ({', '.join(map(str, frames))} frames)" if frames else ""
    return f"whole videos{counts}"


def video_scores_table(
    metrics: dict[str, float | None], baselines: dict[str, dict[str, float | None]] | None = None
) -> Table:
    """One block of rows per convention (video, VideoSAUR, per frame): the model, then its baselines; ×100."""
    columns = [
        Column("convention"),
        Column("segmentation"),
        *(Column(METRIC_TITLES[n], align="right") for n in METRIC_NAMES),
    ]
    sources = [("model", metrics)] + [(BASELINE_TITLES.get(b, b), m) for b, m in (baselines or {}).items()]
    rows = []
    for convention in VIDEO_CONVENTIONS:
        for label, values in sources:
            figures = convention_metrics(values, convention)
            rows.append(
                [VIDEO_CONVENTION_LABELS[convention], label, *(format_fraction(figures.get(n)) for n in METRIC_NAMES)]
            )
    notes = [f"{VIDEO_CONVENTION_LABELS[c]}: {VIDEO_CONVENTION_TITLES[c]}" for c in VIDEO_CONVENTIONS]
    return Table(columns=columns, rows=rows, notes=notes)


def write_clip_report(
    out_dir: str | Path,
    items: list[ClipItem],
    report: dict[str, Any],
    per_clip: dict[int, dict[str, float]] | None = None,
    sections: tuple[str, ...] = (),
) -> Path:
    """Write OUT/viz/clip-<index>-frame-<start>.png per item and OUT/report.html embedding them; returns its path.

    per_clip maps a clip's row number to its scores in the video convention; `sections` (HTML blocks) follow
    the clips."""
    out_dir = Path(out_dir)
    figures = [
        saved_figure(
            out_dir,
            f"clip-{item.index:06d}-frame-{item.start:04d}.png",
            render_clip_panel(item),
            f"video {item.index}, frames {item.start}–{item.start + item.video.shape[0] - 1}",
            (per_clip or {}).get(item.number, {}),
            note=" (video convention)",
        )
        for item in items
    ]
    length = f"<p>Scored on {clip_length_text(report['card'])}.</p>"
    scores = length + to_html(video_scores_table(report["metrics"], report.get("baselines"))) + BASELINE_NOTE
    return write_page(out_dir, page(report, figures, scores=scores, heading="Clips", sections=sections))
