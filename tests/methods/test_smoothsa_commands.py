"""Every command with SmoothSA: train (resume), eval with baselines, infer, export, features, report, doctor,
and official SmoothSA checkpoints (loaded; a DIAS one given as SmoothSA refused, naming the keys)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_methods import SMOOTHSA_TINY
from tiny import DEMO_CONFIG, TINY

from dias.cli import main
from dias.config import load_config
from dias.errors import DiasError
from dias.methods import build_model
from dias.methods.dias.official import dias_official_key_map
from dias.methods.official import OFFICIAL_PREFIX
from dias.methods.smoothsa.model import SmoothSA
from dias.methods.smoothsa.official import smoothsa_official_key_map
from dias.train.checkpoint import LAST, load_checkpoint, load_model

REPO = Path(__file__).resolve().parents[2]
RUN = [
    "train.total_steps=4",
    "train.val_every=2",
    "optim.warmup_steps=1",
    "eval.batch_size=2",
    "model.method.detach_steps=1",
]


@pytest.fixture(scope="module")
def smoothsa_run(tiny_root, tmp_path_factory):
    """A tiny SmoothSA run (4 steps, the preheater detached in the first) trained with `dias train`."""
    run = tmp_path_factory.mktemp("smoothsa") / "run"
    overrides = [*TINY, *SMOOTHSA_TINY, *RUN, f"data.root={tiny_root}"]
    assert main(["train", "--config", str(DEMO_CONFIG), "--out", str(run), *overrides]) == 0
    return run


def test_train_logs_the_methods_terms_and_its_schedule(smoothsa_run):
    records = [json.loads(line) for line in (smoothsa_run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all({"recon", "preheat", "grad_norm", "detach_preheat"} <= set(r) and "distill" not in r for r in steps)
    assert [r["detach_preheat"] for r in steps] == [1.0, 0.0, 0.0, 0.0]
    for r in steps:
        assert r["loss"] == pytest.approx(r["recon"] + 100 * r["preheat"], rel=1e-5)
    assert any("val/fg_ari" in r and "val/kmeans/fg_ari" in r for r in records)
    checkpoint = load_checkpoint(smoothsa_run / LAST)
    assert (
        checkpoint["config"]["model"]["method"]["name"] == "smoothsa" and "preheater.detach_flag" in checkpoint["model"]
    )


def test_resume_continues_a_smoothsa_run(smoothsa_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("last.pt", "config.yaml", "metrics.jsonl"):
        (run / name).write_bytes((smoothsa_run / name).read_bytes())
    assert main(["train", "--resume", str(run), "train.total_steps=5"]) == 0
    assert load_checkpoint(run / LAST)["step"] == 5


def test_eval_report_infer_export_with_smoothsa(smoothsa_run, tiny_root, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(smoothsa_run / LAST), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"fg_ari", "mbo"} <= set(metrics["metrics"]) and {"grid", "voronoi", "kmeans"} <= set(metrics["baselines"])
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(images / "a.png")
    assert main(["infer", "--checkpoint", str(smoothsa_run / LAST), "--out", str(tmp_path / "masks"), str(images)]) == 0
    assert any((tmp_path / "masks").iterdir())
    exported = tmp_path / "smoothsa.safetensors"
    assert main(["export", "--checkpoint", str(smoothsa_run / LAST), "--out", str(exported)]) == 0
    model, cfg = load_model(exported)
    assert isinstance(model, SmoothSA) and cfg.model.method.name == "smoothsa"


def test_features_cache_trains_smoothsa(tiny_root, tmp_path):
    cache = tmp_path / "cache"
    overrides = [*TINY, *SMOOTHSA_TINY, f"data.root={tiny_root}"]
    assert main(["features", "--config", str(DEMO_CONFIG), "--out", str(cache), "--views", "1", *overrides]) == 0
    run = tmp_path / "run"
    args = ["train", "--config", str(DEMO_CONFIG), "--out", str(run), *overrides, *RUN, f"data.features={cache}"]
    assert main(args) == 0 and load_checkpoint(run / LAST)["step"] == 4


def test_doctor_estimates_a_smoothsa_step(tiny_root, capsys):
    config = REPO / "configs" / "smoothsa-coco.yaml"
    small = ["data.image_size=56", "model.backbone.input_scale=1.0", "model.slot_dim=32", "data.batch_size=2"]
    main(["doctor", "--config", str(config), f"data.root={tiny_root}", *small])
    printed = capsys.readouterr().out
    assert "step time" in printed and "a training step fails" not in printed


def _official_state(model) -> dict[str, torch.Tensor]:
    return {official: model.state_dict()[ours] for official, ours in smoothsa_official_key_map(model).items()}


def test_an_official_smoothsa_checkpoint_loads_and_a_dias_one_is_refused(tmp_path):
    config = REPO / "configs" / "smoothsa-coco.yaml"
    small = ["model.backbone.name=patch_stats", "model.backbone.patch_size=16", "model.slot_dim=32"]
    torch.manual_seed(0)
    source = build_model(load_config(config, small))
    release = tmp_path / "smoothsa.pth"
    torch.save({key: value.clone() for key, value in _official_state(source).items()}, release)
    model, cfg = load_model(release, config=config, overrides=small)
    assert isinstance(model, SmoothSA)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    dias_small = [*small, "model.initializer=normal_shared"]
    dias_model = build_model(load_config(REPO / "configs" / "dias-coco.yaml", dias_small))
    dias_release = tmp_path / "dias.pth"
    torch.save({k: dias_model.state_dict()[v] for k, v in dias_official_key_map(dias_model).items()}, dias_release)
    with pytest.raises(DiasError) as info:
        load_model(dias_release, config=config, overrides=small)
    message = str(info.value)  # the preheater's keys, which a DIAS checkpoint lacks, are named
    assert "missing (11)" in message and f"{OFFICIAL_PREFIX}initializ.qproj_kv.weight" in message
