"""The frozen-feature cache: cached tokens agree with live ones; mismatched caches are refused."""

import json
from pathlib import Path

import pytest
import torch

from dias.cli import main
from dias.commands.features import build_feature_cache
from dias.config import load_config
from dias.data.codec import CorruptRecordError
from dias.data.dataset import LmdbDataset
from dias.data.feature_cache import FeatureCacheError, FeatureDataset, decode_features, encode_features
from dias.data.records import LmdbReader, split_path
from dias.data.synthetic import prepare_synthetic
from dias.data.transforms import EvalTransform
from dias.methods.dias.model import build_model
from dias.train.features import expected_info, open_feature_split
from dias.train.loop import train

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


@pytest.fixture(scope="module")
def cache(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    overrides = [f"data.root={synthetic_root}", "data.image_size=64"]
    argv = ["features", "--config", str(DEMO), "--out", str(out), "--views", "2", "--batch-size", "5", *overrides]
    assert main(argv) == 0
    return out, load_config(DEMO, [*overrides, f"data.features={out}"])


@pytest.fixture()
def cfg_and_root(cache, synthetic_root):
    return cache[1], synthetic_root


def test_cached_eval_view_equals_live_features_within_fp16(cache, synthetic_root):
    out, cfg = cache
    model = build_model(cfg)
    source = LmdbDataset(split_path(synthetic_root, "val"), EvalTransform(64))
    cached = open_feature_split(cfg, "val", train=False, source=source)
    assert len(cached) == len(source)
    for index in range(len(source)):
        live = model.backbone(source[index]["image"][None])[0]
        sample = cached[index]
        torch.testing.assert_close(sample["features"], live.half().float(), rtol=0, atol=0)
        assert torch.equal(sample["mask"], source[index]["mask"])


def test_training_views_are_cached_and_drawn(cache):
    out, cfg = cache
    train = open_feature_split(cfg, "train", train=True)
    assert train.num_views == 3
    torch.manual_seed(0)
    draws = {tuple(train[0]["features"][0, :4].tolist()) for _ in range(20)}
    assert len(draws) == 2  # both cached training views are used, and only those
    eval_view = open_feature_split(cfg, "train", train=False)[0]["features"]
    assert tuple(eval_view[0, :4].tolist()) not in draws  # view 0 (eval) is never a training view


def test_step_from_cache_equals_live_step(cache, synthetic_root):
    out, cfg = cache
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    source = LmdbDataset(split_path(synthetic_root, "val"), EvalTransform(64))
    images = torch.stack([source[i]["image"] for i in range(2)])
    cached = open_feature_split(cfg, "val", train=False)
    features = torch.stack([cached[i]["features"] for i in range(2)])
    init = model.initializer(2)
    live = model(images=images, init_slots=init)
    from_cache = model(features=features, init_slots=init)
    torch.testing.assert_close(from_cache.recon, live.recon, rtol=1e-2, atol=1e-2)  # fp16 storage rounding
    fp32_features = model.backbone(images).half().float()
    torch.testing.assert_close(model(features=fp32_features, init_slots=init).recon, from_cache.recon)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.backbone.patch_size=4", "backbone: cache 'colour_codes/v1/p8'"),
        ("model.backbone.name=patch_stats", "backbone: cache 'colour_codes/v1/p8', this run 'patch_stats/v2/p8'"),
        ("data.crop_scale=[0.5,1.0]", "crop_scale: cache [0.75, 1.0], this run [0.5, 1.0]"),
        ("data.flip=false", "flip: cache True, this run False"),
    ],
)
def test_cache_for_another_setup_is_refused_naming_the_key(cache, override, key):
    out, cfg = cache
    other = load_config(DEMO, [f"data.root={cfg.data.root}", "data.image_size=64", f"data.features={out}", override])
    with pytest.raises(FeatureCacheError, match="built for another setup") as info:
        open_feature_split(other, "val", train=False)
    assert key in str(info.value) and f"dias features --config CONFIG --out {out} --overwrite" in str(info.value)


@pytest.mark.parametrize(
    ("num_val", "seed", "key"),
    [
        (6, 9, "source.header.info.seed: cache 5, this run 9"),  # another dataset of the same size and count
        (8, 5, "source.num_records: cache 6, this run 8"),  # more images than the cache holds
        (4, 5, "source.num_records: cache 6, this run 4"),  # fewer
    ],
)
def test_cache_of_another_dataset_is_refused(cache, tmp_path, num_val, seed, key):
    out, cfg = cache
    root = tmp_path / "other"
    prepare_synthetic(root, num_train=2, num_val=num_val, size=48, seed=seed, num_workers=1, progress=False)
    other = load_config(DEMO, [f"data.root={root}", "data.image_size=64", f"data.features={out}"])
    with pytest.raises(FeatureCacheError, match="built for another setup") as info:
        open_feature_split(other, "val", train=False)
    assert key in str(info.value)


def test_cache_of_another_split_is_refused(cache):
    out, cfg = cache
    with pytest.raises(FeatureCacheError, match="source.split: cache 'val', this run 'train'"):
        FeatureDataset(split_path(out, "val"), expected=expected_info(cfg, "train"), train=False)


def test_training_views_are_seeded_per_sample_and_leave_the_rng_alone(cfg_and_root, tmp_path):
    cfg, _ = cfg_and_root
    torch.manual_seed(123)
    before = torch.get_rng_state()
    build_feature_cache(cfg, tmp_path / "a", splits=("train",), num_train_views=2, batch_size=3, progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(7)  # another global state: the same views
    build_feature_cache(cfg, tmp_path / "b", splits=("train",), num_train_views=2, batch_size=5, progress=False)
    with LmdbReader(tmp_path / "a" / "train.lmdb") as a, LmdbReader(tmp_path / "b" / "train.lmdb") as b:
        assert len(a) == len(b) == 3 * 24
        assert all(a.read_bytes(i) == b.read_bytes(i) for i in range(len(a)))


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
        "model.slot_dim=32", "model.slot_attention.mlp_dim=64", "model.decoder.num_layers=1", "eval.batch_size=3",
    ]  # fmt: skip
    result = train(load_config(DEMO, overrides), tmp_path / "run", progress=False)
    assert result.step == 2 and {"ari", "fg_ari", "mbo", "miou", "kmeans/fg_ari", "grid/mbo"} <= set(result.val)
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--out", str(tmp_path / "eval")]) == 0
    card = json.loads((tmp_path / "eval" / "metrics.json").read_text())["card"]
    assert card["num_images"] == 6


def test_precision_is_recorded_and_bf16_tokens_are_fp32_tokens_rounded(cfg_and_root, tmp_path, monkeypatch):
    import dias.runtime.device as device_module

    cfg, _ = cfg_and_root
    vit = load_config(DEMO, [*_vit_overrides(cfg)])
    torch.manual_seed(0)  # the same random ViT twice
    fp32 = build_feature_cache(vit, tmp_path / "fp32", splits=("val",), precision="fp32", progress=False)
    torch.manual_seed(0)
    bf16 = build_feature_cache(vit, tmp_path / "bf16", splits=("val",), precision="bf16", progress=False)
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: True)
    build_feature_cache(cfg, tmp_path / "stand-in", splits=("val",), progress=False)  # auto: fp32 for a stand-in
    with LmdbReader(fp32["val"]["path"]) as a, LmdbReader(bf16["val"]["path"]) as b:
        assert a.header["info"]["precision"] == "fp32" and b.header["info"]["precision"] == "bf16"
        exact, rounded = decode_features(a.read_bytes(0)), decode_features(b.read_bytes(0))
    assert not torch.equal(exact, rounded)
    scale = exact.abs().mean()
    assert (exact - rounded).abs().mean() < 0.05 * scale  # rounding, not another backbone
    with LmdbReader(tmp_path / "stand-in" / "val.lmdb") as reader:
        assert reader.header["info"]["precision"] == "fp32"


def _vit_overrides(cfg) -> list[str]:
    """A random ViT (the release's architecture at a 56 px input: 4 x 4 tokens) over the same synthetic images."""
    return [
        f"data.root={cfg.data.root}",
        "data.image_size=64",
        "model.backbone.name=vit_small_patch14_reg4_dinov2",
        "model.backbone.input_scale=0.875",
    ]
