"""`dias demo` on a ViT's tokens: the data remade from the card, the tokens cached once, the photos drawn, the
fresh training checked; and the one-line fallback to the colour-code model when the weights cannot be had."""

import logging

import pytest
import timm
import torch
from safetensors.torch import save_file
from tiny import tiny_config

import dias.demo.run as demo_run
from dias.cli import main
from dias.commands.features import build_feature_cache
from dias.demo.photos import PHOTOS_FILE_NAME
from dias.demo.reference import COLOUR, DINOV2, bundled_reference_dir, load_reference, package_reference
from dias.demo.run import BUNDLED_DIR_NAME, FEATURES_DIR_NAME, choose_reference, data_tag, run_demo
from dias.errors import DownloadError, MissingFileError
from dias.train.checkpoint import LAST
from dias.train.loop import train
from dias.viz.gallery import REPORT_FILE_NAME

SEEDS = (1, 2, 3)
RUN = ["train.total_steps=8", "optim.warmup_steps=2", "optim.lr=2e-3", "train.val_every=4", "eval.batch_size=4"]


@pytest.fixture(scope="module")
def vit_reference(tiny_root, tmp_path_factory):
    """A reference of three tiny runs on a random ViT-S/14's cached tokens (64 px -> 56 px -> a 4x4 grid)."""
    base = tmp_path_factory.mktemp("vit-reference")
    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=518, num_classes=0)
    save_file(vit.state_dict(), base / "vit.safetensors")
    vit_overrides = [
        "model.backbone.name=vit_small_patch14_dinov2", f"model.backbone.weights={base / 'vit.safetensors'}",
        "data.image_size=64", "model.num_slots=4", "data.crop_scale=[1.0,1.0]", "data.flip=false",
        f"data.features={base / 'cache'}", *RUN,
    ]  # fmt: skip
    build_feature_cache(tiny_config(tiny_root, *vit_overrides), base / "cache", num_train_views=0, progress=False)
    runs = []
    for seed in SEEDS:
        runs.append(base / f"run-{seed}")
        train(tiny_config(tiny_root, *vit_overrides, f"train.seed={seed}"), runs[-1], progress=False)
    assert main(["eval", "--checkpoint", str(runs[0] / LAST), "--out", str(runs[0] / "eval-val")]) == 0
    package_reference(runs, base / "reference")
    return base / "reference"


def test_the_card_records_how_the_data_was_made(vit_reference):
    ref = load_reference(vit_reference)
    assert ref.card["data"] == {"num_train": 16, "num_val": 4, "size": 32, "seed": 0}
    assert data_tag(ref) == "synthetic-32px-16-4-seed0-vit_small_patch14_dinov2"


def test_a_vit_demo_remakes_the_data_caches_the_tokens_and_draws_the_photos(vit_reference, tmp_path, caplog):
    out = tmp_path / "demo"
    with caplog.at_level(logging.INFO, logger="dias.demo.run"):
        summary = run_demo(out, None, ["train.total_steps=8"], reference=vit_reference, progress=False)
    tag = data_tag(load_reference(vit_reference))
    assert summary["model"] == "folder" and summary["machine"]
    assert (out / "data" / tag / "train.lmdb").exists() and (out / FEATURES_DIR_NAME / tag / "val.lmdb").exists()
    bundled = summary["bundled"]
    assert bundled["photos"] == str(out / BUNDLED_DIR_NAME / PHOTOS_FILE_NAME)
    assert "Real photos" in (out / BUNDLED_DIR_NAME / REPORT_FILE_NAME).read_text(encoding="utf-8")
    assert summary["fresh"]["step"] == 8 and summary["check"] is not None
    assert "caching the backbone's tokens" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dias.demo.run"):
        run_demo(out, None, ["train.total_steps=4"], mode="train", reference=vit_reference, progress=False)
    assert "caching" not in caplog.text and "generating" not in caplog.text  # both made once


def test_without_the_weights_auto_says_why_in_one_line_and_runs_the_colour_model(vit_reference, monkeypatch, caplog):
    monkeypatch.setattr(demo_run, "bundled_reference_dir", lambda kind: vit_reference)

    def unreachable(value):
        raise DownloadError("no package index reachable; pass --from FILE")

    monkeypatch.setattr(demo_run, "resolve_weights", unreachable)
    with caplog.at_level(logging.WARNING, logger="dias.demo.run"):
        kind, _ = choose_reference(None)
    assert kind == COLOUR and "no package index reachable" in caplog.text and "colour-code" in caplog.text
    with pytest.raises(DownloadError, match="no package index reachable"):
        choose_reference(None, DINOV2)  # asked for by name: the weights' own error
    monkeypatch.setattr(demo_run, "resolve_weights", lambda value: value)
    assert choose_reference(None)[0] == DINOV2


def test_a_version_without_the_dinov2_model_says_so_and_runs_the_colour_model(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(
        demo_run, "bundled_reference_dir", lambda kind: tmp_path if kind == DINOV2 else bundled_reference_dir(kind)
    )
    with caplog.at_level(logging.WARNING, logger="dias.demo.run"):
        assert choose_reference(None)[0] == COLOUR
    assert "no DINOv2 demo model bundled" in caplog.text
    with pytest.raises(MissingFileError, match="no DINOv2 demo model bundled.*--model colour"):
        choose_reference(None, DINOV2)
