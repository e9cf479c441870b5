"""dias infer, dias.load().segment() and dias export on generated images."""

import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import dias
from dias.cli import main
from dias.commands.infer import Segmenter, run_infer
from dias.data.images import read_image, to_image_tensor
from dias.errors import UsageError
from dias.methods.dias.model import build_model
from dias.train.checkpoint import CheckpointError, load_model, model_state, save_checkpoint

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
    assert done.stderr.splitlines() == [f"dias: error: could not write {out}: File too large; nothing was written"]
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_export_and_load(checkpoint, tmp_path):
    out = tmp_path / "weights.safetensors"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    assert not any(k.startswith("backbone.") for k in load_file(out))
    a, b = dias.load(checkpoint), dias.load(out)
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    torch.testing.assert_close(a.segment(image).decoder_attn, b.segment(image).decoder_attn, rtol=0, atol=0)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "w.pt")]) == 1


def test_export_writes_the_same_bytes_every_time(checkpoint, tmp_path):
    # safetensors alone writes the metadata in hash order: six exports of one checkpoint would not agree
    outs = [tmp_path / f"w{i}.safetensors" for i in range(6)]
    for out in outs:
        assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    blobs = {out.read_bytes() for out in outs}
    assert len(blobs) == 1
    with safe_open(str(outs[0]), framework="pt") as f:
        assert sorted(f.metadata()) == ["config", "dias_version", "format"]
    assert int.from_bytes(blobs.pop()[:8], "little") % 8 == 0  # the header padded as safetensors pads it
    torch.testing.assert_close(load_file(outs[0]), model_state(load_model(checkpoint)[0]), rtol=0, atol=0)


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        dias.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read weights file"):
        dias.load(bad)


def _write_png(path: Path, width: int, height: int, rows: Iterable[bytes], *, bit_depth: int, color_type: int) -> None:
    """A PNG written by hand, for what PIL will not write: 16-bit RGB, or a huge image from a few KB of rows."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(b"\0" + row) for row in rows) + compressor.flush()  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def test_too_large_and_truncated_files_are_skipped_and_the_rest_segmented(checkpoint, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    limit = Image.MAX_IMAGE_PIXELS
    _write_png(folder / "huge.png", 20000, 20000, (bytes(2500) for _ in range(20000)), bit_depth=1, color_type=0)
    assert (folder / "huge.png").stat().st_size < 100_000  # a decompression bomb: 400 megapixels in a small file
    Image.new("RGB", (40, 30), (10, 200, 10)).save(folder / "good.png")
    rng = np.random.default_rng(0)
    for suffix in ("png", "jpg"):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(folder / f"whole.{suffix}")
        data = (folder / f"whole.{suffix}").read_bytes()
        (folder / f"truncated.{suffix}").write_bytes(data[: len(data) // 2])  # a download cut short
        (folder / f"whole.{suffix}").unlink()
    out = tmp_path / "out"
    assert main(["infer", str(folder), "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [Path(item["file"]).name for item in summary["images"]] == ["good.png"]
    reasons = {Path(item["file"]).name: item["reason"] for item in summary["skipped"]}
    assert f"400000000 pixels) exceeds limit of {2 * limit} pixels" in reasons["huge.png"]
    assert "truncated" in reasons["truncated.png"] and "truncated" in reasons["truncated.jpg"]
    assert f"skipped {folder / 'huge.png'}: cannot read image" in capsys.readouterr().out
    assert Image.MAX_IMAGE_PIXELS == limit  # PIL's global guard is left as it was


def test_16_bit_images_are_scaled_to_8_bits_before_the_model(checkpoint, tmp_path, monkeypatch):
    gradient = np.arange(65536, dtype=np.uint16).reshape(256, 256)  # the full range: row r holds 256 r .. 256 r + 255
    rgb = np.stack([gradient, gradient[::-1], np.full_like(gradient, 65535)], axis=-1)  # (H,W,3)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(gradient).save(folder / "gray16.png")  # PIL mode I;16
    _write_png(folder / "rgb16.png", 256, 256, (row.astype(">u2").tobytes() for row in rgb), bit_depth=16, color_type=2)
    seen = []
    segment = Segmenter.segment

    def spy(self, images, **options):
        seen.extend(images)
        return segment(self, images, **options)

    monkeypatch.setattr(Segmenter, "segment", spy)
    run_infer(dias.load(checkpoint), [folder], tmp_path / "out")
    expected = torch.from_numpy((rgb >> 8).astype(np.uint8)).permute(2, 0, 1)  # 65535 -> 255, 255 -> 0
    assert torch.equal(seen[0], expected[0].expand(3, -1, -1))  # gray16.png
    assert torch.equal(seen[1], expected)  # rgb16.png
    assert torch.equal(to_image_tensor(gradient), expected[0].expand(3, -1, -1))  # a numpy uint16 array alike


@pytest.mark.parametrize(("orientation", "quarter_turns"), [(6, -1), (8, 1)])  # 6: turn clockwise to view
def test_exif_orientation_is_applied(checkpoint, tmp_path, orientation, quarter_turns):
    folder = tmp_path / "images"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = orientation  # the EXIF Orientation tag
    stored = np.random.default_rng(0).integers(0, 255, (24, 40, 3), dtype=np.uint8)  # (H,W,3), wider than high
    Image.fromarray(stored).save(folder / "photo.jpg", exif=exif)
    with Image.open(folder / "photo.jpg") as image:
        decoded = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    assert torch.equal(read_image(folder / "photo.jpg"), torch.rot90(decoded, quarter_turns, dims=(1, 2)))
    summary = run_infer(dias.load(checkpoint), [folder], tmp_path / "out")
    assert (summary["images"][0]["height"], summary["images"][0]["width"]) == (40, 24)
    assert Image.open(tmp_path / "out" / "photo_mask.png").size == (24, 40)  # (W, H) as displayed


def test_outputs_are_never_read_as_inputs(checkpoint, images, tmp_path, caplog, capsys):
    segmenter = dias.load(checkpoint)
    out = images / "masks"  # inside the input folder: its files are left out
    for _ in range(2):
        assert run_infer(segmenter, [images], out)["num_images"] == 3
    left_out = [r.getMessage() for r in caplog.records if "inside the output folder" in r.getMessage()]
    assert left_out == [f"not reading 6 image files inside the output folder {out}"]  # the second run's masks, once
    # The input folder itself (or a file in it) as --out is refused: leaving it out would drop the user's images.
    argv = ["infer", str(images), "--checkpoint", str(checkpoint), "--out", str(images)]
    assert main(argv) == 1
    assert f"dias: error: input {images} is inside the output folder {images}" in capsys.readouterr().err
    with pytest.raises(UsageError, match="inside the output folder"):
        run_infer(segmenter, [out / "odd_mask.png"], out)
    assert not list(images.glob("*_mask.png"))


def test_bad_output_folder_and_batch_size_are_one_line(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "out.txt"
    out.write_text("a file")
    assert main(["infer", str(images), "--checkpoint", str(checkpoint), "--out", str(out)]) == 1
    assert f"dias: error: {out} is a file; --out must name a folder" in capsys.readouterr().err
    with pytest.raises(UsageError, match="batch_size must be at least 1, got 0"):
        run_infer(dias.load(checkpoint), [images], tmp_path / "out", batch_size=0)
