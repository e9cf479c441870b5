from pathlib import Path

import pytest
import yaml

from dias.cli import main
from dias.config import (
    Config,
    ConfigError,
    from_dict,
    load_config,
    save_config,
    to_dict,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
SHIPPED_CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_shipped_configs_exist():
    names = {p.name for p in SHIPPED_CONFIGS}
    assert {"dias-clevrtex.yaml", "dias-coco.yaml", "dias-voc.yaml", "demo.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_round_trip(path, tmp_path):
    cfg = load_config(path)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert from_dict(to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("name", "num_slots", "total_steps", "warmup_steps"),
    [("coco", 7, 100000, 5000), ("voc", 6, 50000, 2500), ("clevrtex", 11, 50000, 2500)],
)
def test_official_hyperparameters(name, num_slots, total_steps, warmup_steps):
    cfg = load_config(CONFIG_DIR / f"dias-{name}.yaml")
    assert cfg.model.num_slots == num_slots
    assert cfg.train.total_steps == total_steps
    assert cfg.optim.warmup_steps == warmup_steps == total_steps // 20
    assert cfg.train.val_every == total_steps // 40
    assert cfg.optim.lr == pytest.approx(2e-4)
    assert cfg.optim.final_lr_ratio == pytest.approx(1e-3)
    assert cfg.optim.grad_clip == 1.0
    assert cfg.data.batch_size == 32
    assert cfg.data.image_size == 256
    assert cfg.model.slot_dim == 256 and cfg.model.num_iters == 3
    assert cfg.model.backbone.name == "vit_small_patch14_reg4_dinov2"
    assert cfg.loss.distill_form == "prob" and cfg.loss.distill_schedule == "cosine"


def test_overrides_apply_with_types():
    cfg = load_config(
        CONFIG_DIR / "dias-coco.yaml",
        ["model.num_slots=11", "optim.lr=1e-3", "data.crop_scale=[0.5, 1]", "model.backbone.weights=/w.pth"],
    )
    assert cfg.model.num_slots == 11
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.data.crop_scale == (0.5, 1.0)
    assert cfg.model.backbone.weights == "/w.pth"


def test_defaults_without_file():
    assert load_config() == Config()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.num_slot=3", "did you mean model.num_slots"),
        ("modle.num_slots=3", "did you mean model"),
        ("model.backbone.weight=x", "did you mean model.backbone.weights"),
        ("model.num_slots=3.5", "model.num_slots expects an integer"),
        ("model.num_slots=true", "model.num_slots expects an integer"),
        ("data.flip=1", "data.flip expects true or false"),
        ("optim.lr=fast", "optim.lr expects a number"),
        ("data.crop_scale=[1]", "data.crop_scale expects a list of 2"),
        ("train.precision=fp8", "train.precision = 'fp8' is not one of"),
        ("model.num_slots.x=3", "num_slots is a value"),
        ("model", "not of the form"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_config(CONFIG_DIR / "demo.yaml", [override])


@pytest.mark.parametrize(
    ("override", "valid"),
    [
        ("model.num_slots=-3", ">= 1"),
        ("model.num_slots=0", ">= 1"),
        ("model.num_iters=0", ">= 1"),
        ("model.slot_dim=0", ">= 1"),
        ("data.batch_size=0", ">= 1"),
        ("data.num_workers=-1", ">= 0"),
        ("data.image_size=0", ">= 1"),
        ("train.device=gpu", "one of auto, cpu, cuda, cuda:N, mps"),
        ("train.device=cuda:x", "one of auto, cpu, cuda, cuda:N, mps"),
        ("train.total_steps=0", ">= 1"),
        ("train.val_every=0", ">= 1"),
        ("train.checkpoint_every=0", ">= 1"),
        ("optim.lr=-1", "> 0"),
        ("optim.lr=0", "> 0"),
        ("optim.lr=.nan", "> 0"),
        ("optim.betas=[0.9,1.0]", "two numbers in [0, 1)"),
        ("optim.warmup_steps=-1", ">= 0"),
        ("optim.grad_clip=0", "> 0"),
        ("loss.distill_weight=-0.5", ">= 0"),
        ("model.reinit.prob=1.5", "in [0, 1]"),
        ("model.reinit.threshold=3", "in [0, 2]"),
        ("model.decoder.num_heads=0", ">= 1"),
        ("eval.batch_size=0", ">= 1"),
        ("log.every=0", ">= 1"),
    ],
)
def test_out_of_range_values_are_refused_at_load_naming_the_key(override, valid):
    key = override.partition("=")[0]
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG_DIR / "demo.yaml", [override])
    assert str(info.value).startswith(f"config key {key} = ") and str(info.value).endswith(f"it must be {valid}")


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_valid_devices_load(device):
    assert load_config(None, [f"train.device={device}"]).train.device == device


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  num_slots: 3\n  slot_dim: [1, 2\ntrain:\n  seed: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value).startswith(f"{bad}, line 4, column ") and "not valid YAML" in str(info.value)
    assert main(["config", "--config", str(bad)]) == 1


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"sead": 1}}))
    with pytest.raises(ConfigError, match=r"unknown config key train\.sead; did you mean train\.seed"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    save_config(Config(), path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(OSError, match="No space"):
        save_config(load_config(None, ["train.seed=7"]), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.mask_source=attn0", "eval.mask_source = 'attn0' is invalid: it must be decoder"),
        ("eval.mask_source=decodr", "did you mean eval.mask_source=decoder?"),
        ("eval.mask_source=attn0", "did you mean eval.mask_source=attn:0?"),
        ("eval.mask_source=attn:3", "the model runs 3 slot-attention iterations (model.num_iters=3)"),
        ("eval.mask_source=attn:-4", "did you mean eval.mask_source=attn:-3?"),
        ("model.decoder.name=transformer", "model.decoder.name = 'transformer' is not one of"),
        ("model.initializer=learnt", "did you mean model.initializer=learned?"),
        ("model.reinit.distance=attn", "did you mean model.reinit.distance=attention?"),
        ("loss.distill_form=logits", "loss.distill_form = 'logits' is not one of 'prob', 'log'"),
        ("train.precision=fp61", "did you mean train.precision=fp16?"),
    ],
)
def test_free_strings_are_checked_at_load_with_the_closest_valid_value(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG_DIR / "demo.yaml", [override])
    assert message in str(info.value)


def test_attn_iteration_counts_the_reinitialized_ones():
    full = ["model.reinit.enabled=true", "model.reinit.num_iters=2"]
    assert load_config(CONFIG_DIR / "demo.yaml", [*full, "eval.mask_source=attn:4"]).eval.mask_source == "attn:4"
    with pytest.raises(
        ConfigError, match=r"5 slot-attention iterations \(model.num_iters=3 \+ model.reinit.num_iters=2"
    ):
        load_config(CONFIG_DIR / "demo.yaml", [*full, "eval.mask_source=attn:5"])


def test_doctor_reports_a_misspelt_option_before_anything_runs():
    from dias.engine.doctor import run_checks

    checks = run_checks(CONFIG_DIR / "demo.yaml", ["eval.mask_source=attn0"], estimate=False)
    assert [c.status for c in checks] == ["FAIL"] and "did you mean eval.mask_source=attn:0" in checks[0].message
