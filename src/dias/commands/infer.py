"""Use a trained model on your own images: `dias.load(path).segment(images)` and `dias infer`.

    model = dias.load("runs/demo/last.pt")             # or an exported .safetensors
    result = model.segment([Image.open("a.jpg"), np.zeros((90, 120, 3), np.uint8)])
    result.masks[0]   # (H, W) slot index per pixel, at the first image's own resolution

Images of any size and mode (RGB, grayscale, RGBA, palette, 16-bit; read as dias.data.images says) are
resized to the model's square input; the decoder attention is upsampled back to each image's own size
before the argmax, so masks line up with the original pixels (of an image file: as a viewer shows it).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from dias.data.images import read_image, to_image_tensor
from dias.data.transforms import resize_image
from dias.errors import MissingFileError, UsageError
from dias.io import atomic_write_bytes, require_folder
from dias.masks import masks_from_attention
from dias.methods.base import SlotModel
from dias.runtime.device import AUTO, resolve_device, resolve_precision
from dias.schema import Config
from dias.train.checkpoint import load_model
from dias.viz.panels import overlay, to_pil

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SUMMARY_FILE = "summary.json"


class SegmentResult(NamedTuple):
    masks: list[torch.Tensor]  # B x (H_i, W_i) long: slot index per pixel, at each image's own size
    slots: torch.Tensor  # (B, K, D) final slots
    attn: torch.Tensor  # (T, B, K, N) slot-attention maps per iteration
    decoder_attn: torch.Tensor  # (B, K, N) decoder attention (the masks before upsampling)
    keep: torch.Tensor | None  # (B, K) bool slots kept by pruning, when the model prunes


class ClipResult(NamedTuple):
    masks: list[torch.Tensor]  # T x (H, W) long: slot index per pixel; one index is one slot in every frame
    slots: torch.Tensor  # (T, K, D) each frame's slots
    attn: torch.Tensor  # (T, K, N) each frame's last slot-attention map
    decoder_attn: torch.Tensor  # (T, K, N) decoder attention (the masks before upsampling)


class Segmenter:
    """A trained model (any method) with its config, ready to segment arbitrary images, or clips (a video model)."""

    def __init__(self, model: SlotModel, cfg: Config, device: str | torch.device = AUTO):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.precision = resolve_precision(cfg.eval.precision, self.device, key="eval.precision")
        self.model = model.to(self.device).eval()
        self.cfg = cfg

    @torch.inference_mode()
    def segment(self, images: Any, num_slots: int | None = None, seed: int | None = 0) -> SegmentResult:
        """images: one image or a sequence (PIL, numpy, tensor), or a (B,3,H,W) tensor. Deterministic for a seed."""
        if self.video:
            raise UsageError("this is a video checkpoint: segment a clip's frames with segment_clip(frames)")
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            images = list(images)
        elif not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
            images = [images]
        pixels = [to_image_tensor(image) for image in images]
        if not pixels:
            raise UsageError("segment() needs at least one image, got none")
        size = self.cfg.data.image_size
        batch = torch.stack([resize_image(p, size) for p in pixels]).to(self.device)  # (B,3,S,S)
        if seed is not None:
            torch.manual_seed(seed)  # the initializer samples slots at inference too
        with self.precision.autocast():
            out = self.model(images=batch, num_slots=num_slots)
        grid = self.model.backbone.grid_size(size)
        masks = [
            masks_from_attention(out.decoder_attn[i : i + 1], p.shape[-2:], grid)[0].cpu() for i, p in enumerate(pixels)
        ]
        return SegmentResult(masks, out.slots.cpu(), out.attn.cpu(), out.decoder_attn.cpu(), out.keep)

    @property
    def video(self) -> bool:
        """Whether the model is a video method's: it segments clips (segment_clip), not single images."""
        return self.cfg.model.method.video

    @torch.inference_mode()
    def segment_clip(self, frames: Any, boxes: Any = None, seed: int | None = 0) -> ClipResult:
        """frames: a sequence of T images of one size (PIL, numpy, tensor) or a (T,3,H,W) tensor, in time order.

        A conditional model (MOVi configs) needs boxes: (M, 4) ltrb in [0, 1] of the objects in the first frame,
        M <= K (model.num_slots; the rest are padded with empty boxes, as in training). Slot k is the same slot
        in every frame, so masks[t] == k follows one object over time.
        """
        if not self.video:
            raise UsageError("this is an image checkpoint: segment frames one by one with segment(images)")
        pixels = [to_image_tensor(frame) for frame in frames]
        if not pixels:
            raise UsageError("a clip needs at least one frame")
        if len({tuple(p.shape[-2:]) for p in pixels}) > 1:
            raise UsageError(
                f"a clip's frames must share one size, got {sorted({tuple(p.shape[-2:]) for p in pixels})}"
            )
        size = self.cfg.data.image_size
        clip = torch.stack([resize_image(p, size) for p in pixels])[None].to(self.device)  # (1,T,3,S,S)
        inputs = {"images": clip, "boxes": self._first_frame_boxes(boxes, len(pixels))}
        if seed is not None:
            torch.manual_seed(seed)  # an unconditional model samples frame 0's slots
        with self.precision.autocast():
            out = self.model(**inputs)
        grid = self.model.backbone.grid_size(size)
        masks = masks_from_attention(out.decoder_attn[0], pixels[0].shape[-2:], grid).cpu()  # (T,H,W)
        return ClipResult(list(masks), out.slots[0].cpu(), out.attn[0].cpu(), out.decoder_attn[0].cpu())

    def _first_frame_boxes(self, boxes: Any, num_frames: int) -> torch.Tensor | None:
        """(1, T, K, 4) with frame 0's boxes, padded to K with (0, 0, 0, 0); None for an unconditional model."""
        if not self.model.conditional:
            if boxes is not None:
                raise UsageError("this model is not conditional: it reads no boxes; pass boxes=None")
            return None
        num_slots = self.cfg.model.num_slots
        if boxes is None:
            raise UsageError(
                f"this model is conditional: it starts from the first frame's object boxes; pass boxes, an (M, 4) "
                f"array of ltrb in [0, 1] with M <= {num_slots}"
            )
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32))
        if boxes.dim() != 2 or boxes.shape[1] != 4 or len(boxes) > num_slots:
            raise UsageError(f"boxes must be (M, 4) ltrb with M <= {num_slots}, got {tuple(boxes.shape)}")
        padded = torch.zeros(1, num_frames, num_slots, 4)
        padded[0, 0, : len(boxes)] = boxes  # only frame 0's are read
        return padded.to(self.device)


def load(
    path: str | Path,
    *,
    backbone_weights: str | Path | None = None,
    config: str | Path | None = None,
    device: str = AUTO,
) -> Segmenter:
    """A Segmenter from a dias checkpoint, an exported .safetensors, or an official checkpoint (+ config)."""
    overrides = [f"model.backbone.weights={backbone_weights}"] if backbone_weights is not None else []
    model, cfg = load_model(path, config=config, overrides=overrides)
    return Segmenter(model, cfg, device)


def find_images(inputs: Sequence[str | Path], out_dir: Path) -> list[Path]:
    """Files given directly, plus image files (by suffix) inside given folders, sorted; none under out_dir.

    An output folder inside an input folder is left out of it, so a second run never segments the first
    run's outputs; nothing is lost, as dias writes that folder. An input inside the output folder (the
    same folder, say) is refused instead: leaving it out would drop the user's own images, and outputs
    written among them could replace one (STEM_mask.png).
    """
    out_dir = out_dir.resolve()
    found, num_left_out = [], 0
    for item in map(Path, inputs):
        if not item.exists():
            raise MissingFileError(f"input not found: {item}")
        if item.resolve().is_relative_to(out_dir):
            raise UsageError(f"input {item} is inside the output folder {out_dir}; pass --out a folder outside it")
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            kept = [p for p in files if not p.resolve().is_relative_to(out_dir)]
            num_left_out += len(files) - len(kept)
            found.extend(kept)
        else:
            found.append(item)
    if num_left_out:
        log.warning("not reading %d image files inside the output folder %s", num_left_out, out_dir)
    return found


def run_infer(
    segmenter: Segmenter,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    batch_size: int = 8,
    num_slots: int | None = None,
    boxes: str | Path | None = None,
    slot_masks: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Segment image files; per image write STEM_mask.png, STEM_overlay.png, STEM_slots.npz (+ slot masks).

    A video model reads each input as one clip instead (dias.commands.infer_video.run_infer_clips), a
    conditional one with the first-frame boxes of the JSON file `boxes` (dias.commands.clip_boxes).

    Unreadable files are reported in the summary and skipped; no image file at all is a FileNotFoundError,
    and none readable a UsageError (after the summary is written).
    Returns the summary written to summary.json.
    """
    if segmenter.video:  # each input is a clip
        from dias.commands.infer_video import run_infer_clips

        if num_slots is not None:
            raise UsageError("a video model keeps its trained model.num_slots; drop --num-slots")
        return run_infer_clips(segmenter, inputs, out_dir, boxes=boxes, slot_masks=slot_masks, seed=seed)
    if boxes is not None:
        raise UsageError("boxes are the first-frame boxes of a conditional video model; an image model reads none")
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    out_dir = Path(out_dir)
    require_folder(out_dir)
    paths = find_images(inputs, out_dir)
    if not paths:
        raise MissingFileError(
            f"no images in {', '.join(map(str, inputs))}: pass image files or folders holding files ending in "
            f"{', '.join(IMAGE_SUFFIXES)}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    done, skipped, stems = [], [], set()
    torch.manual_seed(seed)
    with tqdm(total=len(paths), desc="infer", unit="img") as bar:
        for start in range(0, len(paths), batch_size):
            batch_paths, pixels = [], []
            for path in paths[start : start + batch_size]:
                try:
                    pixels.append(read_image(path))
                    batch_paths.append(path)
                except ValueError as exc:
                    log.warning("skipping %s", exc)
                    skipped.append({"file": str(path), "reason": str(exc)})
            if pixels:
                result = segmenter.segment(pixels, num_slots=num_slots, seed=None)
                for i, path in enumerate(batch_paths):
                    stem = _unique_stem(path, stems)
                    done.append(_write_outputs(out_dir, stem, path, pixels[i], result, i, slot_masks))
            bar.update(len(paths[start : start + batch_size]))
    summary = {
        "num_images": len(done),
        "num_skipped": len(skipped),
        "num_slots": num_slots or segmenter.cfg.model.num_slots,
        "image_size": segmenter.cfg.data.image_size,
        "mask_ids": "slot index per pixel (0..K-1), at the input image's resolution",
        "seed": seed,
        "images": done,
        "skipped": skipped,
    }
    atomic_write_bytes(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2).encode("utf-8"))
    if not done:
        raise UsageError(
            f"none of the {len(paths)} images could be read (the first: {skipped[0]['reason']}); every reason is "
            f"in {out_dir / SUMMARY_FILE}"
        )
    return summary


def _write_outputs(
    out_dir: Path, stem: str, path: Path, image: torch.Tensor, result: SegmentResult, index: int, slot_masks: bool
) -> dict[str, Any]:
    labels = result.masks[index]  # (H, W)
    _save_png(Image.fromarray(labels.numpy().astype(np.uint8), mode="L"), out_dir / f"{stem}_mask.png")
    _save_png(to_pil(overlay(image, labels)), out_dir / f"{stem}_overlay.png")
    if slot_masks:
        for k in range(result.decoder_attn.shape[1]):
            mask = ((labels == k).numpy() * 255).astype(np.uint8)
            _save_png(Image.fromarray(mask, mode="L"), out_dir / f"{stem}_slot{k}.png")
    buffer = _npz_bytes(slots=result.slots[index].float().numpy(), decoder_attn=result.decoder_attn[index].numpy())
    atomic_write_bytes(out_dir / f"{stem}_slots.npz", buffer)
    areas = torch.bincount(labels.flatten(), minlength=result.decoder_attn.shape[1]).tolist()
    return {
        "file": str(path),
        "output": stem,
        "height": int(image.shape[1]),
        "width": int(image.shape[2]),
        "slot_areas": areas,
    }


def _unique_stem(path: Path, used: set[str]) -> str:
    """The file's stem, numbered when two inputs of this run share it (a/x.png and b/x.jpg)."""
    stem, suffix = path.stem, 1
    while stem in used:
        stem, suffix = f"{path.stem}-{suffix}", suffix + 1
    used.add(stem)
    return stem


def _save_png(image: Image.Image, path: Path) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
