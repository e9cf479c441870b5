"""The frozen-feature cache of a video dataset: per-frame tokens of whole-clip views, windows read alone, the loss
at step 0 equal to the loss from frames, training and evaluation from it, and the identity refusal."""

import json
from pathlib import Path

import pytest
import torch

from dias.cli import main
from dias.config import load_config
from dias.data.clip_dataset import collate_clips
from dias.data.feature_cache import FeatureCacheError
from dias.losses import reconstruction_loss
from dias.methods import build_model
from dias.train.features import batch_inputs
from dias.train.loaders import clip_split, clips
from dias.train.loop import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_VIDEO = [
    "data.name=synthetic_video", "model.num_slots=6", "data.image_size=32", "model.backbone.name=patch_stats",
    "model.backbone.patch_size=8", "model.slot_dim=32", "model.slot_attention.mlp_dim=64", "model.decoder.num_layers=1",
    "data.clip_length=3", "data.batch_size=2", "data.num_workers=0", "eval.batch_size=2", "train.device=cpu",
    "eval.device=cpu", "log.every=1", "log.tensorboard=false", "train.precision=fp32",
]  # fmt: skip
CONFIG = CONFIGS / "randsfq-movi-c.yaml"  # conditional: the cache must bring boxes


def tiny(root, *overrides):
    return load_config(CONFIG, [*TINY_VIDEO, f"data.root={root}", *overrides])


@pytest.fixture(scope="module")
def cache(tiny_video_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("video-features")
    overrides = [*TINY_VIDEO, f"data.root={tiny_video_root}"]
    argv = ["features", "--config", str(CONFIG), "--out", str(out), "--views", "2", "--batch-size", "3", "--dtype"]
    assert main([*argv, "fp32", "--device", "cpu", *overrides]) == 0
    return out, tiny(tiny_video_root, f"data.features={out}")


def test_cached_eval_windows_equal_the_live_frames_tokens_and_boxes(cache):
    out, cfg = cache
    model = build_model(cfg)
    cached = clip_split(cfg, "val", train=False)
    live = clips(cfg, "val", train=False)
    assert len(cached) == len(live) == 2
    for item in range(len(live)):
        sample, frames = cached[item], live[item]
        torch.testing.assert_close(sample["features"], model.backbone(frames["video"]), rtol=0, atol=0)
        assert sample["features"].shape == (4, 16, model.backbone.feature_dim)  # (T, N, C), the whole video
        train_view = clip_split(cfg, "val", train=False).read(item, 0, range(4))[1]
        assert torch.equal(train_view, frames["boxes"]) and torch.equal(sample["masks"], frames["masks"])


def test_training_windows_come_from_whole_clip_views(cache):
    out, cfg = cache
    dataset = clip_split(cfg, "train", train=True)
    assert dataset.num_views == 3 and len(dataset) == 4
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        sample = dataset[1]
        assert sample["features"].shape[0] == 3 and sample["boxes"].shape == (3, 6, 4)  # (T, K, 4)
        # a window is a slice of one cached view: the same view read whole holds it at `start`
        views = [dataset.read(1, view, range(4))[0] for view in (1, 2)]
        window = slice(sample["start"], sample["start"] + 3)
        matches = [
            view for view, tokens in zip((1, 2), views, strict=True) if torch.equal(tokens[window], sample["features"])
        ]
        assert matches
        seen.add((matches[0], sample["start"]))
    assert {view for view, _ in seen} == {1, 2} and {start for _, start in seen} == {0, 1}
    eval_view = dataset.read(1, 0, range(4))[0]
    assert not any(torch.equal(eval_view, view) for view in views)  # view 0 is never drawn for training


def test_step0_loss_from_cache_equals_loss_from_frames(cache):
    out, cfg = cache
    torch.manual_seed(0)
    model = build_model(cfg).train()
    cached = collate_clips([clip_split(cfg, "val", train=False)[i] for i in range(2)])
    inputs = batch_inputs(cached, "cpu", boxes=True)
    assert set(inputs) == {"features", "boxes"} and inputs["features"].shape[:2] == (2, 4)  # (B, T, N, C)
    frames = {key: value for key, value in cached.items() if key != "features"}
    losses = []
    for batch in (frames, cached):
        torch.manual_seed(1)  # the same draws (decoder order, initial slots) for both
        out = model(**batch_inputs(batch, "cpu", boxes=True))
        losses.append(reconstruction_loss(out.recon, out.features))
    torch.testing.assert_close(losses[1], losses[0], rtol=0, atol=0)  # fp32 cache: the same tokens, the same loss


def test_training_and_evaluation_read_the_video_cache(cache, tmp_path):
    out, cfg = cache
    overrides = ["train.total_steps=2", "train.val_every=2"]
    result = train(tiny(cfg.data.root, f"data.features={out}", *overrides), tmp_path / "run", progress=False)
    assert result.step == 2 and {"ari", "fg_ari", "mbo", "miou"} <= set(result.val)
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.backbone.patch_size=4", "backbone: cache 'patch_stats/v2/p8', this run 'patch_stats/v2/p4'"),
        ("data.image_size=48", "image_size: cache 32, this run 48"),
        ("data.max_objects=7", "num_slots: cache 6, this run 7"),
        ("data.flip=false", "flip: cache True, this run False"),
    ],
)
def test_video_cache_for_another_setup_is_refused_naming_the_key(cache, override, key):
    out, cfg = cache
    other = tiny(
        cfg.data.root, f"data.features={out}", override, *(["model.num_slots=7"] if "max_objects" in override else [])
    )
    with pytest.raises(FeatureCacheError, match=key.replace("(", r"\(").replace("[", r"\[")):
        clip_split(other, "train", train=True)
