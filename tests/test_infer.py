"""dias infer, dias.load().segment() and dias export on generated images."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import dias
from dias.cli import main
from dias.engine.checkpoint import CheckpointError, save_checkpoint
from dias.engine.infer import to_image_tensor
from dias.model import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, small_demo_config):
    torch.manual_seed(0)
    cfg = small_demo_config()
    path = tmp_path_factory.mktemp("run") / "last.pt"
    return save_checkpoint(path, build_model(cfg), cfg, step=0)


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)).save(folder / "odd.png")
    Image.fromarray(rng.integers(0, 255, (80, 60), dtype=np.uint8), mode="L").save(folder / "gray.jpg")
    Image.fromarray(rng.integers(0, 255, (50, 50, 4), dtype=np.uint8), mode="RGBA").save(folder / "rgba.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def test_segment_accepts_any_input_and_maps_back(checkpoint):
    model = dias.load(checkpoint)
    inputs = [
        Image.new("RGB", (53, 37), (200, 10, 10)),
        np.zeros((90, 120), np.uint8),
        np.zeros((20, 30, 4), np.uint8),
        torch.zeros(3, 64, 64, dtype=torch.uint8),
    ]
    result = model.segment(inputs)
    assert [tuple(m.shape) for m in result.masks] == [(37, 53), (90, 120), (20, 30), (64, 64)]
    assert all(m.dtype == torch.long and 0 <= m.min() and m.max() < 7 for m in result.masks)
    assert result.slots.shape == (4, 7, 32) and result.attn.shape == (3, 4, 7, 8 * 8)
    again = model.segment(inputs)
    assert all(torch.equal(a, b) for a, b in zip(result.masks, again.masks, strict=True))  # seeded
    assert model.segment(inputs[0], num_slots=3).slots.shape == (1, 3, 32)


def test_to_image_tensor_modes():
    assert to_image_tensor(np.zeros((4, 5), np.uint8)).shape == (3, 4, 5)
    assert to_image_tensor(torch.ones(1, 4, 5)).max() == 255
    with pytest.raises(ValueError, match="shape"):
        to_image_tensor(np.zeros((4, 5, 7), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_image_tensor(torch.full((3, 4, 5), 7.0))


def test_infer_command_writes_outputs_and_skips_corrupt(checkpoint, images, tmp_path):
    out = tmp_path / "out"
    argv = ["infer", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--batch-size", "2"]
    assert main([*argv, "--slot-masks", "--num-slots", "5"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 3 and summary["num_skipped"] == 1
    assert summary["skipped"][0]["file"].endswith("corrupt.png")
    for stem, size in (("odd", (53, 37)), ("gray", (60, 80)), ("rgba", (50, 50))):
        mask = Image.open(out / f"{stem}_mask.png")
        assert mask.size == size
        assert Image.open(out / f"{stem}_overlay.png").size == size
        assert np.asarray(mask).max() < 5
        assert (out / f"{stem}_slot4.png").exists() and not (out / f"{stem}_slot5.png").exists()
        slots = np.load(out / f"{stem}_slots.npz")
        assert slots["slots"].shape == (5, 32)


def test_export_and_load(checkpoint, tmp_path):
    out = tmp_path / "weights.safetensors"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    assert not any(k.startswith("backbone.") for k in load_file(out))
    a, b = dias.load(checkpoint), dias.load(out)
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    torch.testing.assert_close(a.segment(image).decoder_attn, b.segment(image).decoder_attn, rtol=0, atol=0)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "w.pt")]) == 1


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        dias.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read weights file"):
        dias.load(bad)
