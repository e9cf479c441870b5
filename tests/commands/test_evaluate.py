import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tiny import TINY
from torch import nn
from torch.utils.data import DataLoader

from dias.baselines import BASELINE_NAMES, grid_partition
from dias.cli import main
from dias.commands.evaluate import run_eval
from dias.config import load_config
from dias.data.codec import IGNORE_ID
from dias.data.dataset import LmdbDataset, collate
from dias.data.transforms import EvalTransform
from dias.errors import UsageError
from dias.methods.base import SlotOutput
from dias.methods.dias.model import build_model
from dias.metrics import METRIC_NAMES
from dias.schema import parse_mask_source
from dias.train.checkpoint import load_model, save_checkpoint
from dias.train.validate import evaluate

EVAL_MODEL = [  # the suite's tiny run (tests/tiny.py) with a finer grid and sampled slots
    *TINY,
    "model.backbone.patch_size=4",  # 32 px -> an 8x8 token grid
    "model.num_slots=4",
    "model.initializer=normal_shared",  # sampled slots: evaluation depends on the seed
    "model.slot_dim=16",
    "model.slot_attention.mlp_dim=32",
    "model.decoder.num_layers=1",
    "model.decoder.num_heads=2",
    "eval.batch_size=4",
]
CARD_KEYS = {
    "dataset", "split", "num_images", "num_evaluated", "num_skipped_corrupt", "num_scored", "num_unscored",
    "input_resolution", "mask_resolution", "mask_source", "ground_truth", "background", "matching",
    "checkpoint", "checkpoint_sha256", "dias_version", "seed", "device", "torch_version", "date",
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(synthetic_root, tmp_path_factory):
    cfg = load_config("configs/demo.yaml", [*EVAL_MODEL, f"data.root={synthetic_root}"])
    torch.manual_seed(0)
    model = build_model(cfg)
    checkpoint = save_checkpoint(tmp_path_factory.mktemp("run") / "last.pt", model, cfg, step=2)
    dataset = LmdbDataset(synthetic_root / "val.lmdb", EvalTransform(cfg.data.image_size))
    loader = DataLoader(dataset, batch_size=4, collate_fn=collate)
    return model, cfg, checkpoint, loader


def test_eval_command_writes_metrics_card_config_and_report(tiny, tmp_path, capsys):
    _, _, checkpoint, _ = tiny
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(checkpoint), "--out", str(out), "--viz", "2"]) == 0
    assert "ARI-FG" in capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["metrics"]) == set(METRIC_NAMES)
    assert -1 <= report["metrics"]["ari"] <= 1 and -1 <= report["metrics"]["fg_ari"] <= 1
    assert 0 <= report["metrics"]["mbo"] <= 1 and 0 <= report["metrics"]["miou"] <= 1
    card = report["card"]
    assert CARD_KEYS <= set(card)
    assert (card["num_images"], card["split"], card["mask_source"]) == (6, "val", "decoder")
    assert card["input_resolution"] == [32, 32] and card["mask_resolution"] == [32, 32]
    assert len(card["checkpoint_sha256"]) == 64
    assert load_config(out / "config.yaml").data.image_size == 32
    pngs = sorted((out / "viz").glob("*.png"))
    assert len(pngs) == 2
    assert Image.open(pngs[0]).mode == "RGB"
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 2


def test_eval_reads_its_own_device_and_precision_keys(tiny, tmp_path, monkeypatch):
    import dias.runtime.device as device_module

    _, _, checkpoint, _ = tiny
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: False)
    cases = [(["train.precision=fp16", "train.device=cuda"], "fp32"), (["eval.precision=bf16"], "bf16")]
    for overrides, precision in cases:
        card = run_eval(checkpoint, overrides=overrides, out_dir=tmp_path / precision, progress=False)["card"]
        assert (card["device"], card["precision"]) == ("cpu", precision)
    card = run_eval(checkpoint, overrides=["eval.precision=fp16"], out_dir=tmp_path / "fp16", progress=False)["card"]
    assert card["precision"] == "fp32"  # fp16 off CUDA, on a CPU without bf16 instructions
    card = run_eval(checkpoint, overrides=["eval.precision=auto"], out_dir=tmp_path / "auto", progress=False)["card"]
    assert card["precision"] == "fp32"  # auto: no bf16 instructions
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: True)
    card = run_eval(checkpoint, overrides=["eval.precision=auto"], out_dir=tmp_path / "auto", progress=False)["card"]
    assert card["precision"] == "bf16"


def test_eval_of_a_model_already_loaded_scores_as_from_the_file(tiny, tmp_path):
    _, _, checkpoint, _ = tiny
    from_file = run_eval(checkpoint, overrides=["eval.seed=3"], out_dir=tmp_path / "file", progress=False)
    loaded = load_model(checkpoint, overrides=["eval.seed=3"])
    given = run_eval(checkpoint, out_dir=tmp_path / "loaded", progress=False, loaded=loaded)
    assert given["metrics"] == from_file["metrics"] and given["card"]["seed"] == 3
    assert given["card"]["checkpoint_sha256"] == from_file["card"]["checkpoint_sha256"]
    with pytest.raises(UsageError, match="load_model"):  # overrides here would not reach the loaded model
        run_eval(checkpoint, overrides=["eval.seed=4"], out_dir=tmp_path / "both", progress=False, loaded=loaded)


def test_default_out_dir_is_next_to_the_checkpoint(tiny):
    _, _, checkpoint, _ = tiny
    result = run_eval(checkpoint, overrides=["eval.mask_source=attn:0"], progress=False)
    assert result["path"] == str(checkpoint.parent / "eval-val-attn0" / "metrics.json")
    assert result["card"]["mask_source"] == "attn:0"


def test_same_seed_same_scores_and_caller_rng_untouched(tiny):
    model, _, _, loader = tiny
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = evaluate(model, loader, seed=0, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    second = evaluate(model, loader, seed=0, progress=False)
    other = evaluate(model, loader, seed=1, progress=False)
    assert first.num_images == 6 and first.mask_size == (32, 32)
    for name in METRIC_NAMES:
        np.testing.assert_array_equal(first.scores[name], second.scores[name])
    assert not np.array_equal(first.scores["ari"], other.scores["ari"])


@pytest.mark.parametrize("source", ["decoder", "attn:0", "attn:-1"])
def test_mask_sources(tiny, source):
    model, _, _, loader = tiny
    result = evaluate(model, loader, mask_source=source, progress=False, max_batches=1)
    assert result.num_images == 4
    assert all(np.isfinite(values).all() for values in result.scores.values())


@pytest.mark.parametrize("source", ["slots", "attn:", "attn:one", "attn:3", "attn:-4"])
def test_bad_mask_source_is_explained(tiny, source):
    model, _, _, loader = tiny
    with pytest.raises(ValueError, match="mask source"):
        evaluate(model, loader, mask_source=source, progress=False, max_batches=1)


def test_bad_mask_source_on_the_command_line(tiny, tmp_path, capsys):
    _, _, checkpoint, _ = tiny
    args = ["eval", "--checkpoint", str(checkpoint), "--out", str(tmp_path), "eval.mask_source=slots"]
    assert main(args) == 1
    assert "config key eval.mask_source = 'slots' is invalid" in capsys.readouterr().err
    assert parse_mask_source("attn:-1") == -1 and parse_mask_source("decoder") is None


class OracleModel(nn.Module):
    """Reads the ground truth hidden in channel 0 of the image and predicts it exactly."""

    def forward(self, images):
        labels = images[:, 0].long()  # (B,H,W)
        attn = F.one_hot(labels, 4).permute(0, 3, 1, 2).flatten(2).float()  # (B,K,N)
        features = attn.transpose(1, 2)  # (B,N,C): one token per pixel, the one-hot label
        return SlotOutput(features=features, slots=None, attn=attn[None], recon=None, decoder_attn=attn)


def test_perfect_prediction_scores_one_and_unscored_images_are_left_out():
    generator = torch.Generator().manual_seed(0)
    gt = torch.randint(0, 4, (3, 8, 8), generator=generator)
    masks = gt.clone()
    masks[2] = IGNORE_ID  # nothing to score
    masks[0, 0, :] = IGNORE_ID  # a few ignored pixels; the oracle predicts label 0 there
    gt[0, 0, :] = 0
    images = gt[:, None].expand(-1, 3, -1, -1).to(torch.uint8)
    batches = [
        {"image": images[:2], "mask": masks[:2], "index": torch.tensor([0, 1]), "num_skipped": 0},
        {"num_skipped": 2},  # every record of this batch was corrupt
        {"image": images[2:], "mask": masks[2:], "index": torch.tensor([2]), "num_skipped": 1},
    ]
    result = evaluate(OracleModel(), batches, progress=False)
    assert result.num_images == 3 and result.num_skipped == 3
    np.testing.assert_array_equal(result.indices, [0, 1, 2])
    np.testing.assert_allclose(result.scores["ari"][:2], 1.0)
    np.testing.assert_allclose(result.scores["fg_ari"][:2], 1.0)
    np.testing.assert_allclose(result.scores["miou"][1], 1.0)
    assert result.scores["mbo"][0] < 1  # ignored pixels still count in a predicted mask's union
    assert all(np.isnan(values[2]) for values in result.scores.values())
    assert result.num_scored()["ari"] == 2
    assert result.means()["ari"] == pytest.approx(1.0)


def test_baselines_are_scored_with_the_model_on_the_same_images():
    grid = grid_partition(4, (8, 8)).argmax(dim=0)  # (8,8): the 2x2 blocks
    stripes = (torch.arange(8) // 2).expand(8, 8)  # four vertical stripes
    gt = torch.stack([grid, stripes])
    images = gt[:, None].expand(-1, 3, -1, -1).to(torch.uint8)
    batches = [{"image": images, "mask": gt, "index": torch.tensor([0, 1]), "num_skipped": 0}]
    result = evaluate(OracleModel(), batches, progress=False)
    assert set(result.baselines) == set(BASELINE_NAMES)
    for name in BASELINE_NAMES:
        assert set(result.baselines[name]) == set(METRIC_NAMES) and len(result.baselines[name]["ari"]) == 2
    np.testing.assert_allclose(result.baselines["grid"]["ari"][0], 1.0)  # the blind grid is right on image 0 only
    assert result.baselines["grid"]["ari"][1] < 1
    np.testing.assert_allclose(result.baselines["kmeans"]["ari"], 1.0)  # 4 distinct tokens, 4 clusters
    assert result.baselines["voronoi"]["ari"].max() < 1
    assert result.baseline_means()["kmeans"]["ari"] == pytest.approx(1.0)
    assert evaluate(OracleModel(), batches, progress=False, baselines=()).baselines == {}


def test_metrics_json_card_and_report_carry_the_baselines(tiny, tmp_path):
    _, _, checkpoint, _ = tiny
    report = run_eval(checkpoint, out_dir=tmp_path, viz=1, progress=False)
    assert set(report["baselines"]) == set(BASELINE_NAMES)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["baselines"] == report["baselines"]
    assert all(-1 <= saved["baselines"][name]["fg_ari"] <= 1 for name in BASELINE_NAMES)
    assert set(saved["card"]["baselines"]["what"]) == set(BASELINE_NAMES)
    page = (tmp_path / "report.html").read_text()
    assert "k-means on the backbone tokens" in page and "fixed Voronoi cells" in page


def test_validation_scores_the_baselines_once_and_reuses_them(tiny, monkeypatch):
    from dias.train import validate as evaluate_module
    from dias.train.validate import baseline_part, validate

    model, _, _, loader = tiny
    first = validate(model, loader, "decoder", 0, torch.device("cpu"))
    known = baseline_part(first)
    assert set(known) == {f"{b}/{m}" for b in BASELINE_NAMES for m in METRIC_NAMES}
    calls = []
    real = evaluate_module.baseline_masks
    monkeypatch.setattr(evaluate_module, "baseline_masks", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert validate(model, loader, "decoder", 0, torch.device("cpu"), baselines=known) == first
    assert not calls  # nothing scored again
