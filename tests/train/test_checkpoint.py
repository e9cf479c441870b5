from pathlib import Path

import pytest
import torch

from dias.config import load_config
from dias.methods.dias.model import build_model
from dias.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    save_checkpoint,
)

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"
FIXTURE = REPO / "tests" / "fixtures" / "official_seed0.pt"


@pytest.fixture()
def demo():
    cfg = load_config(DEMO)
    torch.manual_seed(0)
    return build_model(cfg), cfg


def test_round_trip_without_backbone(demo, tmp_path):
    model, cfg = demo
    path = save_checkpoint(tmp_path / "last.pt", model, cfg, step=7)
    checkpoint = load_checkpoint(path)
    assert checkpoint["step"] == 7
    assert not any(k.startswith("backbone.") for k in checkpoint["model"])
    loaded, loaded_cfg = load_model(path)
    assert loaded_cfg == cfg
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


def test_overrides_that_keep_the_model_are_accepted(demo, tmp_path):
    model, cfg = demo
    path = save_checkpoint(tmp_path / "last.pt", model, cfg, step=1)
    _, loaded_cfg = load_model(path, overrides=["eval.batch_size=3", "data.root=elsewhere"])
    assert loaded_cfg.eval.batch_size == 3 and loaded_cfg.data.root == "elsewhere"


def test_incompatible_config_is_refused(demo, tmp_path):
    model, cfg = demo
    path = save_checkpoint(tmp_path / "last.pt", model, cfg, step=1)
    with pytest.raises(CheckpointError, match=r"model\.slot_dim: 128 -> 64"):
        load_model(path, overrides=["model.slot_dim=64"])
    with pytest.raises(CheckpointError, match="another model config"):
        load_model(path, config=REPO / "configs" / "dias-coco.yaml")


def test_failed_save_keeps_the_previous_checkpoint(demo, tmp_path, monkeypatch):
    model, cfg = demo
    path = save_checkpoint(tmp_path / "last.pt", model, cfg, step=1)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="no space left on the disk holding .*; the previous last.pt is intact"):
        save_checkpoint(path, model, cfg, step=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not a dias checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="neither a dias checkpoint nor an official"):
        load_model(other)


def test_pickled_code_is_never_run(tmp_path):
    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "dias-checkpoint", "payload": Payload()}, evil)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()


def test_official_checkpoint_needs_a_config_and_loads(tmp_path):
    weights = torch.load(FIXTURE, weights_only=True)["weights"]
    path = tmp_path / "42-0027.pth"
    torch.save(weights, path)
    with pytest.raises(CheckpointError, match="pass --config"):
        load_model(path)
    model, cfg = load_model(path, config=REPO / "configs" / "dias-coco.yaml")
    torch.testing.assert_close(model.initializer.mean, weights["m.initializ.mean"])
    assert cfg.model.num_slots == 7
