"""dias infer, dias.load().segment() and dias export on generated images."""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

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

SRC = Path(__file__).resolve().parents[2] / "src"


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


def test_infer_on_a_folder_without_images_is_an_error(checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["infer", str(empty), "--checkpoint", str(checkpoint), "--out", str(out)]) == 1
    assert f"no images in {empty}" in capsys.readouterr().err
    assert not out.exists()


def test_a_failed_save_is_one_line_naming_the_file(checkpoint, tmp_path):
    # A real file-size limit (as in the probe): the write fails with EFBIG (Python ignores SIGXFSZ).
    out = tmp_path / "weights.safetensors"
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONDONTWRITEBYTECODE": "1"}

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    argv = [sys.executable, "-m", "dias", "export", "--checkpoint", str(checkpoint), "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, preexec_fn=limit_file_size, timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"dias: error: could not write {out}: File too large"]
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


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
