"""`dias probe` on video: slot tracks matched to object tracks over the clip, one sample per visible frame."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tiny import TINY_VIDEO

from dias.cli import main
from dias.commands.probe import MAJORITY, RESULT_FILE, SOURCES
from dias.config import load_config
from dias.data.synthetic_video import DATASET_NAME
from dias.probe.labels import ProbeLabelError, clip_object_classes, label_vocabulary
from dias.probe.tracks import match_clip_batch
from dias.train.loop import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RUNS = {"randsfq": "randsfq-ytvis.yaml", "smoothsa_video": "smoothsa-video-movi-c.yaml"}  # unconditional, conditional
# IoU > 0: a one-step model's segments are too coarse for the protocol's 0.1 on 32-pixel frames
PROBE_RUN = ["probe.total_steps=2", "probe.batch_size=2", "probe.iou_threshold=0", "data.eval_clip_length=null"]


@pytest.fixture(scope="module")
def runs(tiny_video_root, tmp_path_factory) -> dict[str, Path]:
    """One training step of an unconditional and a conditional video model on tiny synthetic-video."""
    found = {}
    for name, config in RUNS.items():
        run_dir = tmp_path_factory.mktemp(name)
        overrides = [*TINY_VIDEO, f"data.root={tiny_video_root}", "train.total_steps=1", "train.val_every=100"]
        assert train(load_config(CONFIGS / config, overrides), run_dir, progress=False).status == "done"
        found[name] = run_dir / "last.pt"
    return found


@pytest.mark.parametrize(("name", "attribute"), [("randsfq", "shape"), ("smoothsa_video", "color")])
def test_probe_on_a_tiny_video_run_scores_the_model_beside_the_baselines(runs, name, attribute, tmp_path, capsys):
    out = tmp_path / "probe"
    args = ["probe", "--checkpoint", str(runs[name]), "--out", str(out), *PROBE_RUN, f"probe.attribute={attribute}"]
    assert main(args) == 0
    assert "k-means" in capsys.readouterr().out
    saved = json.loads((out / RESULT_FILE).read_text())
    assert set(saved["metrics"]) == {*SOURCES, MAJORITY} and saved["card"]["attribute"] == attribute
    for source in SOURCES:
        metrics = saved["metrics"][source]
        assert metrics["num_matches"] > 0  # per frame of each matched track
        assert 0 <= metrics["top1"] <= metrics["top3"] <= 1 and 0 <= metrics["box_iou"] <= 1


def test_probe_refuses_an_attention_iteration_a_video_model_does_not_keep(runs, tmp_path, capsys):
    args = ["probe", "--checkpoint", str(runs["randsfq"]), "--out", str(tmp_path / "p"), "probe.mask_source=attn:0"]
    assert main([*args, "probe.attribute=shape", *PROBE_RUN]) == 1
    assert "use probe.mask_source=decoder or attn:-1" in capsys.readouterr().err


def _clip_batch() -> tuple[SimpleNamespace, dict]:
    """One clip of 2 frames on a 2x2 grid (= 2x2 pixels): object 1 on the left column, object 2 on the right.
    Slot 0 covers the left column in both frames (a track); slot 1 the right column in frame 0 only, and slot 2
    in frame 1 (an identity switch): slot 1's track and slot 2's overlap object 2 for half of the clip each."""
    masks = torch.tensor([[1, 2], [1, 2]]).expand(1, 2, 2, 2).clone()  # (B, T, H, W)
    attn = torch.zeros(1, 2, 3, 4)  # (B, T, K, N), N in row-major order over the 2x2 grid
    attn[0, :, 0, [0, 2]] = 1
    attn[0, 0, 1, [1, 3]] = 1
    attn[0, 1, 2, [1, 3]] = 1
    slots = torch.arange(2 * 3, dtype=torch.float32).view(1, 2, 3, 1)  # (B, T, K, D): slot k of frame t is 3t + k
    out = SimpleNamespace(attn=attn, decoder_attn=attn, slots=slots, features=torch.zeros(1, 2, 4, 1))
    return out, {"masks": masks}


def test_tracks_are_matched_over_the_clip_and_give_one_sample_per_visible_frame():
    out, batch = _clip_batch()
    options = dict(mask_source="attn:-1", grid=(2, 2), official_cap=False)
    matched = match_clip_batch(out, batch, [[5, 7]], sources=("model",), iou_threshold=0.1, **options)["model"]
    # slot 0 <-> object 1 (IoU 1) in both frames; slot 1 or 2 <-> object 2 (space-time IoU 0.5), both frames
    assert matched.classes.tolist() == [5, 5, 7, 7]
    assert matched.vectors[:2, 0].tolist() == [0.0, 3.0]  # slot 0's vector in frame 0, then in frame 1
    assert matched.vectors[2:, 0].tolist() in ([1.0, 4.0], [2.0, 5.0])  # one slot's track, not the per-frame best
    assert matched.boxes[0].tolist() == [0.0, 0.0, 0.5, 1.0] and matched.boxes[2].tolist() == [0.5, 0.0, 1.0, 1.0]
    # above the switched tracks' IoU (0.5), only the kept track matches
    matched = match_clip_batch(out, batch, [[5, 7]], sources=("model",), iou_threshold=0.6, **options)["model"]
    assert matched.classes.tolist() == [5, 5]


def test_an_object_without_a_category_is_matched_but_gives_no_sample():
    out, batch = _clip_batch()
    options = dict(mask_source="attn:-1", grid=(2, 2), official_cap=False, iou_threshold=0.1)
    matched = match_clip_batch(out, batch, [[0, 7]], sources=("model", "grid"), **options)
    assert matched["model"].classes.tolist() == [7, 7] and len(matched["grid"].vectors) <= 2


def test_ytvis_classes_are_the_category_per_object_over_the_clip():
    assert len(label_vocabulary("ytvis", "category")) == 41
    classes = torch.tensor([[3, 0, 0], [3, 12, 0]])  # (T, K): object 2 first seen in frame 1, row 3 padding
    assert clip_object_classes("ytvis", "category", num_objects=2, classes=classes) == [3, 12]
    with pytest.raises(ProbeLabelError, match="dias prepare ytvis"):
        clip_object_classes("ytvis", "category", num_objects=2)
    with pytest.raises(ProbeLabelError, match="probe.attribute"):
        clip_object_classes("ytvis", "shape", num_objects=2, classes=classes)
    meta = {"shapes": ["circle", "square"], "colors": [[255, 0, 0], [0, 0, 255]]}
    shapes = label_vocabulary(DATASET_NAME, "shape")
    assert [shapes[c] for c in clip_object_classes(DATASET_NAME, "shape", num_objects=2, meta=meta)] == [
        "circle",
        "square",
    ]
