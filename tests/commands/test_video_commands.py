"""`dias infer`, `dias export` and `dias doctor` on a tiny trained video run (tiny_video_root, tiny.TINY_VIDEO)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import TINY_VIDEO

import dias
from dias.cli import main
from dias.commands.doctor import exit_code, format_checks, run_checks
from dias.commands.export import export_weights
from dias.commands.infer import run_infer
from dias.commands.infer_video import VIDEO_EXTRA
from dias.config import load_config
from dias.errors import DiasError, UsageError
from dias.train.loop import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RUNS = {"randsfq": "randsfq-ytvis.yaml", "smoothsa_video": "smoothsa-video-movi-c.yaml"}  # unconditional, conditional


@pytest.fixture(scope="module")
def runs(tiny_video_root, tmp_path_factory) -> dict[str, Path]:
    """One training step of an unconditional (RandSF.Q YTVIS) and a conditional (SmoothSA-video MOVi-C) model."""
    found = {}
    for name, config in RUNS.items():
        run_dir = tmp_path_factory.mktemp(name)
        overrides = [*TINY_VIDEO, f"data.root={tiny_video_root}", "train.total_steps=1", "train.val_every=100"]
        assert train(load_config(CONFIGS / config, overrides), run_dir, progress=False).status == "done"
        found[name] = run_dir / "last.pt"
    return found


@pytest.fixture()
def frames(tmp_path) -> Path:
    folder = tmp_path / "clip"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for t in (2, 0, 1):  # written out of order: a clip is its frames sorted by name
        Image.fromarray(rng.integers(0, 255, (37, 45, 3), dtype=np.uint8)).save(folder / f"f{t:02d}.png")
    return folder


def test_infer_segments_a_folder_of_frames_as_one_clip_with_slot_ids_over_time(runs, frames, tmp_path):
    out = tmp_path / "out"
    assert main(["infer", str(frames), "--checkpoint", str(runs["randsfq"]), "--out", str(out), "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    (clip,) = summary["clips"]
    assert clip["num_frames"] == 3 and [Path(f["file"]).name for f in clip["frames"]] == [
        "f00.png",
        "f01.png",
        "f02.png",
    ]
    for t in range(3):
        mask = np.asarray(Image.open(out / "clip" / f"f{t:02d}_mask.png"))
        assert mask.shape == (37, 45) and mask.max() < 6
        assert (out / "clip" / f"f{t:02d}_overlay.png").exists() and (out / "clip" / f"f{t:02d}_slots.npz").exists()
    track = np.load(out / "clip" / "track.npz")["masks"]
    assert track.shape == (3, 37, 45)
    np.testing.assert_array_equal(track[1], np.asarray(Image.open(out / "clip" / "f01_mask.png")))
    assert Image.open(out / "clip" / "track.png").size == (3 * 45, 37)
    # the Python API gives the same masks for the same seed
    result = dias.load(runs["randsfq"], device="cpu").segment_clip([Image.open(p) for p in sorted(frames.iterdir())])
    np.testing.assert_array_equal(torch.stack(result.masks).numpy(), track)


def _boxes_file(folder: Path, content, name: str = "boxes.json") -> Path:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_infer_runs_a_conditional_model_from_first_frame_boxes_in_pixels_or_normalised(runs, frames, tmp_path):
    pixels = _boxes_file(tmp_path, {"units": "pixels", "clips": {"clip": [[9, 0, 27, 37], [0, 3.7, 45, 7.4]]}})
    out = tmp_path / "out"
    command = ["infer", str(frames), "--checkpoint", str(runs["smoothsa_video"]), "--device", "cpu"]
    assert main([*command, "--out", str(out), "--boxes", str(pixels)]) == 0
    (clip,) = json.loads((out / "summary.json").read_text())["clips"]
    np.testing.assert_allclose(clip["first_frame_boxes"], [[0.2, 0.0, 0.6, 1.0], [0.0, 0.1, 1.0, 0.2]])
    track = np.load(out / "clip" / "track.npz")["masks"]
    assert track.shape == (3, 37, 45) and track.max() < 6
    # the same boxes, normalised, give the same masks, and so does the Python API with them
    normalised = _boxes_file(tmp_path, {"units": "normalised", "clips": {"clip": clip["first_frame_boxes"]}}, "n.json")
    assert main([*command, "--out", str(tmp_path / "again"), "--boxes", str(normalised)]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "again" / "clip" / "track.npz")["masks"], track)
    segmenter = dias.load(runs["smoothsa_video"], device="cpu")
    result = segmenter.segment_clip([Image.open(p) for p in sorted(frames.iterdir())], boxes=clip["first_frame_boxes"])
    np.testing.assert_array_equal(torch.stack(result.masks).numpy(), track)
    # the boxes start the slots: other boxes, other masks
    moved = _boxes_file(tmp_path, {"units": "normalised", "clips": {"clip": [[0.5, 0.5, 1.0, 1.0]]}}, "m.json")
    run_infer(segmenter, [frames], tmp_path / "moved", boxes=moved)
    assert not np.array_equal(np.load(tmp_path / "moved" / "clip" / "track.npz")["masks"], track)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "boxes file not found"),
        ("{not json", "not JSON"),
        ({"units": "pixels"}, "no 'clips' object"),
        ({"units": "inches", "clips": {"clip": []}}, "'units' must be 'pixels' or 'normalised'"),
        ({"units": "pixels", "clips": {"clip": [[1, 2, 3]]}}, "the clip 'clip' must have a list of boxes"),
        ({"units": "pixels", "clips": {"clip": [1, 2, 3, 4]}}, "the clip 'clip' must have a list of boxes"),
        ({"units": "pixels", "clips": {"clip": [[0, 0, 1, 1]] * 7}}, "has 7 boxes, and the model has 6 slots"),
        ({"units": "pixels", "clips": {"other": [[0, 0, 1, 1]]}}, "no boxes for the clip 'clip'"),
        ({"units": "pixels", "clips": {"clip": [[0, 0, 46, 10]]}}, "within its first frame's 45x37 pixels"),
        ({"units": "normalised", "clips": {"clip": [[0.5, 0, 0.4, 1]]}}, "left <= right"),
    ],
)
def test_infer_refuses_a_missing_bad_or_mis_shaped_boxes_file_in_one_line(runs, frames, tmp_path, content, message):
    path = tmp_path / "boxes.json" if content is None else _boxes_file(tmp_path, content)
    command = ["infer", str(frames), "--checkpoint", str(runs["smoothsa_video"]), "--out", str(tmp_path / "out")]
    segmenter = dias.load(runs["smoothsa_video"], device="cpu")
    with pytest.raises(DiasError, match=message) as refusal:
        run_infer(segmenter, [frames], tmp_path / "out", boxes=path)
    assert "\n" not in str(refusal.value)
    assert main([*command, "--device", "cpu", "--boxes", str(path)]) == 1
    assert not (tmp_path / "out" / "clip").exists()  # checked before any clip runs


def test_infer_refuses_a_conditional_model_without_boxes_and_boxes_for_others(runs, frames, tmp_path):
    conditional = dias.load(runs["smoothsa_video"], device="cpu")
    with pytest.raises(UsageError, match="conditional.*--boxes FILE") as refusal:
        run_infer(conditional, [frames], tmp_path / "out")
    assert "\n" not in str(refusal.value)
    boxes = _boxes_file(tmp_path, {"units": "pixels", "clips": {"clip": [[0, 0, 10, 10]]}})
    twin = tmp_path / "elsewhere" / "clip"
    twin.mkdir(parents=True)
    for frame in frames.iterdir():
        (twin / frame.name).write_bytes(frame.read_bytes())
    with pytest.raises(UsageError, match="two inputs are named 'clip'"):
        run_infer(conditional, [frames, twin], tmp_path / "out", boxes=boxes)
    with pytest.raises(UsageError, match="not conditional.*drop --boxes"):
        run_infer(dias.load(runs["randsfq"], device="cpu"), [frames], tmp_path / "out", boxes=boxes)


def test_infer_refuses_single_images_and_num_slots_with_a_video_model_in_one_line(runs, frames, tmp_path):
    conditional = dias.load(runs["smoothsa_video"], device="cpu")
    result = conditional.segment_clip([np.zeros((20, 30, 3), np.uint8)] * 2, boxes=[[0.1, 0.1, 0.5, 0.6]])
    assert [tuple(m.shape) for m in result.masks] == [(20, 30)] * 2 and result.slots.shape[:2] == (2, 6)
    segmenter = dias.load(runs["randsfq"], device="cpu")
    with pytest.raises(UsageError, match="folder of frames or a video file"):
        run_infer(segmenter, [frames / "f00.png"], tmp_path / "out")
    with pytest.raises(UsageError, match="num_slots"):
        run_infer(segmenter, [frames], tmp_path / "out", num_slots=3)
    with pytest.raises(UsageError, match="segment_clip"):
        segmenter.segment([np.zeros((20, 30, 3), np.uint8)])


def test_infer_reads_a_video_file_with_pyav_and_without_it_names_the_extra(runs, tmp_path, monkeypatch):
    video = tmp_path / "walk.mp4"
    segmenter = dias.load(runs["randsfq"], device="cpu")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
        video.write_bytes(b"")
        with pytest.raises(UsageError, match=r"dias\[video\]") as refusal:
            run_infer(segmenter, [video], tmp_path / "no-av")
        assert VIDEO_EXTRA in str(refusal.value) and "\n" not in str(refusal.value)
    av = pytest.importorskip("av")
    rng = np.random.default_rng(0)
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(4):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    summary = run_infer(segmenter, [video], tmp_path / "out")
    assert summary["clips"][0]["num_frames"] == 4
    assert np.load(tmp_path / "out" / "walk" / "track.npz")["masks"].shape == (4, 48, 64)


def test_export_of_a_video_checkpoint_loads_back_with_the_same_masks(runs, frames, tmp_path):
    for name, checkpoint in runs.items():
        exported = export_weights(checkpoint, tmp_path / f"{name}.safetensors")
        original, loaded = dias.load(checkpoint, device="cpu"), dias.load(exported, device="cpu")
        assert type(loaded.model) is type(original.model) and loaded.video
        for key, value in original.model.state_dict().items():
            torch.testing.assert_close(loaded.model.state_dict()[key], value, rtol=0, atol=0)
        clip = [Image.open(p) for p in sorted(frames.iterdir())]
        boxes = [[0.0, 0.0, 0.5, 0.5]] if original.model.conditional else None
        a, b = (s.segment_clip(clip, boxes=boxes, seed=1) for s in (original, loaded))
        torch.testing.assert_close(a.decoder_attn, b.decoder_attn)


@pytest.mark.parametrize("config", RUNS.values())
def test_doctor_reads_clip_splits_builds_the_video_model_and_times_a_clip_step(config, tiny_video_root):
    overrides = [*TINY_VIDEO, f"data.root={tiny_video_root}", "data.eval_clip_length=2"]
    checks = run_checks(CONFIGS / config, overrides)
    text = format_checks(checks)
    assert exit_code(checks) == 0 and "WARN" not in text, text
    by_name = {check.name: check for check in checks}
    assert "4 videos (synthetic_video)" in by_name["data train"].message and "within K=6" in text
    assert "frames per video 4-4" in by_name["data val"].message
    assert "clips of 3 frames" in by_name["step time"].message
    too_short = run_checks(CONFIGS / config, [*overrides, "data.clip_length=5"], estimate=False)
    assert any(c.status == "FAIL" and "data.clip_length" in c.message for c in too_short if c.name == "data train")
    too_few_slots = run_checks(
        CONFIGS / config, [*overrides, "data.max_objects=2", "model.num_slots=2"], estimate=False
    )
    assert any(c.status == "FAIL" and "data.max_objects" in c.message for c in too_few_slots if c.name == "data train")
