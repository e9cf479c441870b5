"""Real photos through a demo model: its decoder masks beside k-means on the very tokens it reads.

    panel = photo_panel(model, cfg)   # (3, H, W) uint8, one row per photo: input | model masks | k-means
    save_photo_panel(model, cfg, "runs/demo/bundled/photos.png")

The four photos ship in dias/demo_photos/ (public domain or CC0, copied from scikit-image by
scripts/demo_photos.py; sources.json names each one's author and licence). No photo was seen in training
and none has ground truth: this is a look, not a score. k-means runs per photo with as many clusters as
the model has slots, on the backbone's tokens of the same resized view, so the two partitions differ
only in what grouped the tokens.
"""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from dias.baselines import kmeans
from dias.data.images import read_image
from dias.data.transforms import resize_image
from dias.io import atomic_write
from dias.masks import masks_from_attention
from dias.methods.base import SlotModel
from dias.schema import Config
from dias.viz.gallery import figure
from dias.viz.panels import caption, hstack, overlay, to_pil, vstack

PHOTOS_PACKAGE_DIR = "demo_photos"  # inside the dias package
PHOTOS_FILE_NAME = "photos.png"
PHOTOS_NOTE = (
    "Four real photos (public domain or CC0, shipped in dias/demo_photos/), never seen in training and without "
    "ground truth: a look at what the model groups, beside k-means on the same tokens, not a score."
)
PHOTO_SUFFIX = ".jpg"
DISPLAY_HEIGHT = 192


def photo_paths() -> list[Path]:
    """The shipped photos, in name order."""
    folder = Path(str(resources.files("dias").joinpath(PHOTOS_PACKAGE_DIR)))
    return sorted(folder.glob(f"*{PHOTO_SUFFIX}"))


@torch.inference_mode()
def photo_panel(model: SlotModel, cfg: Config, *, seed: int = 0, height: int = DISPLAY_HEIGHT) -> torch.Tensor:
    """(3, H, W) uint8: per photo [input | the model's decoder masks | k-means on the same tokens], each
    `height` pixels high."""
    model.eval()
    size = cfg.data.image_size
    grid = model.backbone.grid_size(size)
    rows = []
    for index, path in enumerate(photo_paths()):
        photo = read_image(path)  # (3, H, W) uint8
        with torch.random.fork_rng(devices=[]):  # the initializer samples slots at inference too
            torch.manual_seed(seed)
            out = model(images=resize_image(photo, size)[None])
        labels = kmeans(out.features, cfg.model.num_slots, seed=seed)  # (1, N)
        clusters = F.one_hot(labels, cfg.model.num_slots).transpose(1, 2).float()  # (1, K, N)
        shape = tuple(photo.shape[-2:])
        tiles = [
            (photo, "photo"),
            (overlay(photo, masks_from_attention(out.decoder_attn, shape, grid)[0]), "model's masks"),
            (overlay(photo, masks_from_attention(clusters, shape, grid)[0]), f"k-means, K={cfg.model.num_slots}"),
        ]
        shown = [_fit_height(tile, height) for tile, _ in tiles]
        if index == 0:
            shown = [caption(tile, title) for tile, (_, title) in zip(shown, tiles, strict=True)]
        rows.append(hstack(shown, gap=4))
    return vstack(rows, gap=4)


def save_photo_panel(model: SlotModel, cfg: Config, path: str | Path) -> Path:
    """Write photo_panel as a PNG at `path` (atomically); returns the path."""
    path = Path(path)
    image = to_pil(photo_panel(model, cfg))
    atomic_write(path, lambda f: image.save(f, format="PNG", optimize=True))
    return path


def photo_section(panel: str | Path) -> str:
    """The photo panel (a PNG) as an HTML section for an eval report (run_eval's report_sections)."""
    section = f"<h2>Real photos</h2>\n<p>{html.escape(PHOTOS_NOTE)}</p>\n"
    return section + figure(Path(panel).name, Path(panel).read_bytes(), "photo | the model's decoder masks | k-means")


def _fit_height(image: torch.Tensor, height: int) -> torch.Tensor:
    """(3, H, W) uint8 scaled to `height` rows, the aspect kept."""
    width = round(image.shape[-1] * height / image.shape[-2])
    resized = F.interpolate(image[None].float(), size=(height, width), mode="bilinear", antialias=True)
    return resized[0].round().clamp(0, 255).to(torch.uint8)
