import ast
from pathlib import Path

import pytest
import torch

from dias.data.codec import IGNORE_ID
from dias.viz.gallery import VizItem, keep_strip, render_panel
from dias.viz.panels import (
    BOUNDARY_COLOR,
    IGNORE_COLOR,
    PALETTE,
    attention_strip,
    boundaries,
    caption,
    colorize,
    grid,
    heatmap,
    hstack,
    overlay,
    vstack,
)


@pytest.fixture()
def scene():
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=generator)
    labels = torch.zeros(16, 16, dtype=torch.long)
    labels[4:10, 4:10] = 1
    labels[12:, :] = IGNORE_ID
    return image, labels


def test_palette_colours_are_distinct():
    assert PALETTE.dtype == torch.uint8 and PALETTE.shape[1] == 3
    assert len({tuple(colour.tolist()) for colour in PALETTE}) == len(PALETTE)


def test_colorize_paints_labels_and_ignore(scene):
    _, labels = scene
    image = colorize(labels)
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8
    assert image[:, 5, 5].tolist() == PALETTE[1].tolist()
    assert image[:, 13, 0].tolist() == list(IGNORE_COLOR)


def test_overlay_with_alpha_zero_is_the_image(scene):
    image, labels = scene
    torch.testing.assert_close(overlay(image, labels, alpha=0.0), image, rtol=0, atol=0)


def test_overlay_colours_and_boundaries(scene):
    image, labels = scene
    out = overlay(image, labels, alpha=1.0)
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert out[:, 6, 6].tolist() == PALETTE[1].tolist()  # inside the square, away from its edge
    edge = boundaries(labels)
    assert edge[3, 5] and not edge[6, 6]
    assert out[:, 3, 5].tolist() == list(BOUNDARY_COLOR)
    with pytest.raises(ValueError, match="differ in size"):
        overlay(image, labels[:8])


def test_heatmap_is_dark_at_zero_and_bright_at_one():
    values = torch.tensor([[0.0, 1.0]])
    image = heatmap(values)
    assert image.shape == (3, 1, 2) and image.dtype == torch.uint8
    assert image[:, 0, 0].sum() < image[:, 0, 1].sum()


def test_attention_strip_shapes():
    attn = torch.rand(5, 64).softmax(dim=0)  # (K,N): an 8x8 grid
    strip = attention_strip(attn, size=12)
    assert strip.shape == (3, 12, 5 * 12) and strip.dtype == torch.uint8
    assert attention_strip(attn.unflatten(-1, (8, 8)), size=12).shape == (3, 12, 60)
    assert attention_strip(attn, size=12, gap=2).shape == (3, 12, 5 * 12 + 4 * 2)
    with pytest.raises(ValueError, match="square grid"):
        attention_strip(torch.rand(5, 60), size=12)


def test_stacking_and_captions():
    a = torch.zeros(3, 4, 5, dtype=torch.uint8)
    b = torch.zeros(3, 6, 2, dtype=torch.uint8)
    assert hstack([a, b], gap=1).shape == (3, 6, 8)
    assert vstack([a, b], gap=1).shape == (3, 11, 5)
    assert grid([[a, b], [b]], gap=1).shape == (3, 13, 8)
    assert caption(a, "slot 1", height=15).shape == (3, 19, 5)


def test_render_panel(scene):
    image, labels = scene
    num_iters, num_slots = 3, 4
    item = VizItem(
        index=0,
        image=image,
        gt=labels,
        pred=labels.clamp(max=3),
        attn=torch.rand(num_iters, num_slots, 16).softmax(dim=1),
        decoder_attn=torch.rand(num_slots, 16).softmax(dim=0),
        mask_source="decoder",
    )
    panel = render_panel(item, tile_size=20)
    assert panel.dim() == 3 and panel.shape[0] == 3 and panel.dtype == torch.uint8
    assert panel.shape[1] > (num_iters + 1) * 20


def test_render_panel_shows_kept_and_pruned_slots(scene):
    image, labels = scene
    attn = torch.rand(4, 3, 16).softmax(dim=1)
    common = dict(index=0, image=image, gt=labels, pred=labels.clamp(max=2), attn=attn, mask_source="decoder")
    plain = render_panel(VizItem(**common, decoder_attn=attn[-1]), tile_size=20)
    keep = torch.tensor([True, False, True])
    pruned = render_panel(VizItem(**common, decoder_attn=attn[-1], keep=keep), tile_size=20)
    assert pruned.shape[1] > plain.shape[1]  # one more strip
    strip = keep_strip(keep, 20)
    assert strip.shape == (3, 20, 60)
    assert strip[1, 0, 0] > strip[0, 0, 0] and torch.equal(
        strip[:, 0, 20], torch.tensor([90, 90, 90], dtype=torch.uint8)
    )


def test_viz_renders_and_imports_no_command_training_or_demo_code():
    viz = Path(__file__).parents[1] / "src" / "dias" / "viz"
    upward = [["dias", package] for package in ("commands", "train", "demo", "cli")]
    for path in sorted(viz.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            assert not [n for n in names if n.split(".")[:2] in upward], f"{path.name} imports {names}"
