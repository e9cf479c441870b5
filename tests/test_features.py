"""The frozen-feature cache: cached tokens agree with live ones; mismatched caches are refused."""

import json
from pathlib import Path

import pytest
import torch

from dias.cli import main
from dias.config import load_config
from dias.data.dataset import LmdbDataset, split_path
from dias.data.records import CorruptRecordError
from dias.data.transforms import EvalTransform
from dias.engine.features import FeatureDataset, decode_features, encode_features
from dias.engine.train import train
from dias.model import build_model

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


@pytest.fixture(scope="module")
def cache(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    overrides = [f"data.root={synthetic_root}", "data.image_size=64"]
    argv = ["features", "--config", str(DEMO), "--out", str(out), "--views", "2", "--batch-size", "5", *overrides]
    assert main(argv) == 0
    return out, load_config(DEMO, overrides)


def test_cached_eval_view_equals_live_features_within_fp16(cache, synthetic_root):
    out, cfg = cache
    model = build_model(cfg)
    source = LmdbDataset(split_path(synthetic_root, "val"), EvalTransform(64))
    cached = FeatureDataset(split_path(out, "val"), cfg, train=False, source=source)
    assert len(cached) == len(source)
    for index in range(len(source)):
        live = model.backbone(source[index]["image"][None])[0]
        sample = cached[index]
        torch.testing.assert_close(sample["features"], live.half().float(), rtol=0, atol=0)
        assert torch.equal(sample["mask"], source[index]["mask"])


def test_training_views_are_cached_and_drawn(cache):
    out, cfg = cache
    train = FeatureDataset(split_path(out, "train"), cfg, train=True)
    assert train.num_views == 3
    torch.manual_seed(0)
    draws = {tuple(train[0]["features"][0, :4].tolist()) for _ in range(20)}
    assert len(draws) == 2  # both cached training views are used, and only those
    eval_view = FeatureDataset(split_path(out, "train"), cfg, train=False)[0]["features"]
    assert tuple(eval_view[0, :4].tolist()) not in draws  # view 0 (eval) is never a training view


def test_step_from_cache_equals_live_step(cache, synthetic_root):
    out, cfg = cache
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    source = LmdbDataset(split_path(synthetic_root, "val"), EvalTransform(64))
    images = torch.stack([source[i]["image"] for i in range(2)])
    cached = FeatureDataset(split_path(out, "val"), cfg, train=False)
    features = torch.stack([cached[i]["features"] for i in range(2)])
    init = model.initializer(2)
    live = model(images=images, init_slots=init)
    from_cache = model(features=features, init_slots=init)
    torch.testing.assert_close(from_cache.recon, live.recon, rtol=1e-2, atol=1e-2)  # fp16 storage rounding
    fp32_features = model.backbone(images).half().float()
    torch.testing.assert_close(model(features=fp32_features, init_slots=init).recon, from_cache.recon)


def test_cache_for_another_setup_is_refused(cache):
    out, cfg = cache
    other = load_config(DEMO, ["data.image_size=64", "model.backbone.patch_size=4"])
    with pytest.raises(ValueError, match="built for another setup.*backbone"):
        FeatureDataset(split_path(out, "val"), other, train=False)


def test_corrupt_feature_record():
    data = encode_features(torch.randn(4, 3))
    assert decode_features(data).shape == (4, 3)
    with pytest.raises(CorruptRecordError, match="00000007.*cache.lmdb"):
        decode_features(data[:-2], "cache.lmdb", "00000007")
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC"):
        decode_features(bytes(flipped))


def test_training_and_evaluation_read_the_cache(cache, tmp_path):
    out, cfg = cache
    overrides = [
        f"data.root={cfg.data.root}", "data.image_size=64", f"data.features={out}", "data.batch_size=4",
        "data.num_workers=0", "train.total_steps=2", "train.val_every=2", "log.tensorboard=false",
        "model.slot_dim=32", "model.slot_mlp_dim=64", "model.decoder.num_layers=1", "eval.batch_size=3",
    ]  # fmt: skip
    result = train(load_config(DEMO, overrides), tmp_path / "run", progress=False)
    assert result.step == 2 and {"ari", "fg_ari", "mbo", "miou", "kmeans/fg_ari", "grid/mbo"} <= set(result.val)
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--out", str(tmp_path / "eval")]) == 0
    card = json.loads((tmp_path / "eval" / "metrics.json").read_text())["card"]
    assert card["num_images"] == 6
