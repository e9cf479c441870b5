import re
from pathlib import Path

import pytest
import yaml

import dias
from dias.cli import main
from dias.config import LEGACY_LAYOUT_READ_UNTIL, from_dict, load_config, save_config, to_dict
from dias.methods.smoothsa.config import detach_steps
from dias.schema import Config, ConfigError
from dias.schema import val_every as config_val_every
from dias.schema import warmup_steps as config_warmup_steps

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
PACKAGED_DEMO = Path(dias.__file__).parent / "configs" / "demo.yaml"  # `dias demo`'s config
SHIPPED_CONFIGS = [*sorted(CONFIG_DIR.glob("*.yaml")), PACKAGED_DEMO]
STEPS = "in 1 .. 1000000000 (a step count; 10**9 steps would take years)"
SLOTS = "in 1 .. 256 (published models use 7-24; memory grows with it)"


def test_shipped_configs_exist():
    names = {p.name for p in SHIPPED_CONFIGS}
    assert {"dias-clevrtex.yaml", "dias-coco.yaml", "dias-voc.yaml", "demo.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
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
    assert cfg.optim.warmup_steps is None and cfg.train.val_every is None  # derived from total_steps, as the release
    assert config_warmup_steps(cfg) == warmup_steps == total_steps // 20
    assert config_val_every(cfg) == total_steps // 40
    assert cfg.optim.lr == pytest.approx(2e-4)
    assert cfg.optim.final_lr_ratio == pytest.approx(1e-3)
    assert cfg.optim.grad_clip == 1.0
    assert cfg.data.batch_size == 32
    assert cfg.data.image_size == 256
    assert cfg.model.slot_dim == 256 and cfg.model.slot_attention.num_iters == 3
    assert cfg.model.backbone.name == "vit_small_patch14_reg4_dinov2"
    assert cfg.model.method.distill_form == "prob" and cfg.model.method.distill_schedule == "cosine"


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
    assert load_config() == from_dict({})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.num_slot=3", "did you mean model.num_slots"),
        ("modle.num_slots=3", "did you mean model"),
        ("model.backbone.weight=x", "did you mean model.backbone.weights"),
        ("model.num_slots=3.5", "model.num_slots = 3.5 is not an integer"),
        ("model.num_slots=true", "model.num_slots = True is not an integer"),
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
        ("model.num_slots=-3", SLOTS),
        ("model.num_slots=0", SLOTS),
        ("model.slot_attention.num_iters=0", ">= 1"),
        (
            "model.slot_dim=0",
            "in 1 .. 4096 (a layer width; published OCL models use 256-1024 and memory grows with its square)",
        ),
        ("data.batch_size=0", "in 1 .. 4096 (images per step; memory and a step's time grow with it)"),
        ("data.num_workers=-1", ">= 0"),
        ("data.image_size=0", "in 1 .. 4096 (pixels per side; a ViT's memory grows with its 4th power)"),
        ("train.device=gpu", "one of auto, cpu, cuda, cuda:N, mps"),
        ("train.device=cuda:x", "one of auto, cpu, cuda, cuda:N, mps"),
        ("train.total_steps=0", STEPS),
        ("train.val_every=0", STEPS),
        ("train.checkpoint_every=0", STEPS),
        ("optim.lr=-1", "> 0"),
        ("optim.lr=0", "> 0"),
        ("optim.betas=[0.9,1.0]", "two numbers in [0, 1)"),
        ("optim.warmup_steps=-1", STEPS.replace("in 1", "in 0")),
        ("optim.grad_clip=0", "> 0"),
        ("model.method.distill_weight=-0.5", ">= 0"),
        ("model.method.reinit.prob=1.5", "in [0, 1]"),
        ("model.method.reinit.threshold=3", "in [0, 2]"),
        ("model.decoder.num_heads=0", ">= 1"),
        ("eval.batch_size=0", "in 1 .. 4096 (images per step; memory and a step's time grow with it)"),
        ("log.every=0", STEPS),
    ],
)
def test_out_of_range_values_are_refused_at_load_naming_the_key_the_range_and_a_fix_that_loads(override, valid):
    key = override.partition("=")[0]
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG_DIR / "demo.yaml", [override])
    message = str(info.value)
    assert message.startswith(f"config key {key} = ") and f"it must be {valid}; e.g. {key}=" in message
    assert_fix_loads(message, CONFIG_DIR / "demo.yaml")


def assert_fix_loads(message, path, overrides=()):
    """The message's last "KEY=VALUE" loads after `overrides`: the fix it names works."""
    fix = re.findall(r"[a-z_]+(?:\.[a-z_]+)+=\S+", message)[-1].rstrip(",;?")
    load_config(path, [*overrides, fix])


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
        ("eval.mask_source=attn:3", "the model runs 3 slot-attention iterations (model.slot_attention.num_iters=3)"),
        ("eval.mask_source=attn:-4", "did you mean eval.mask_source=attn:-3?"),
        ("model.decoder.name=transformer", "model.decoder.name = 'transformer' is not one of"),
        ("model.initializer=learnt", "did you mean model.initializer.name=learned?"),
        ("model.method.reinit.distance=attn", "did you mean model.method.reinit.distance=attention?"),
        ("model.method.distill_form=logits", "model.method.distill_form = 'logits' is not one of 'prob', 'log'"),
        ("train.precision=fp61", "did you mean train.precision=fp16?"),
    ],
)
def test_free_strings_are_checked_at_load_with_the_closest_valid_value(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG_DIR / "demo.yaml", [override])
    assert message in str(info.value)


def test_attn_iteration_counts_the_reinitialized_ones():
    full = ["model.method.reinit.enabled=true", "model.method.reinit.num_iters=2"]
    assert load_config(CONFIG_DIR / "demo.yaml", [*full, "eval.mask_source=attn:4"]).eval.mask_source == "attn:4"
    with pytest.raises(
        ConfigError,
        match=r"5 slot-attention iterations \(model.slot_attention.num_iters=3 \+ model.method.reinit.num_iters=2",
    ):
        load_config(CONFIG_DIR / "demo.yaml", [*full, "eval.mask_source=attn:5"])


def test_doctor_reports_a_misspelt_option_before_anything_runs():
    from dias.commands.doctor import run_checks

    checks = run_checks(CONFIG_DIR / "demo.yaml", ["eval.mask_source=attn0"], estimate=False)
    assert [c.status for c in checks] == ["FAIL"] and "did you mean eval.mask_source=attn:0" in checks[0].message


def test_a_variant_file_is_its_base_plus_its_differences():
    full, base = load_config(CONFIG_DIR / "dias-full-coco.yaml"), load_config(CONFIG_DIR / "dias-coco.yaml")
    assert full.model.method.reinit.enabled and not base.model.method.reinit.enabled
    assert full.train.out_dir == "runs/dias-full-coco"
    full.model.method.reinit, full.train.out_dir = base.model.method.reinit, base.train.out_dir  # the overlay's keys
    assert full == base  # nothing else differs
    voc = load_config(CONFIG_DIR / "dias-full-voc.yaml")  # a base of a base
    assert voc.model.num_slots == 6 and voc.model.method.reinit.enabled and voc.data.name == "voc"


def test_base_files_merge_key_by_key_and_a_role_naming_another_class_replaces_its_section(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "model:\n  num_slots: 5\n  decoder:\n    name: random_order_transformer\n    num_layers: 2\n"
    )
    (tmp_path / "same.yaml").write_text("base: base.yaml\nmodel:\n  decoder:\n    num_heads: 2\n")
    (tmp_path / "other.yaml").write_text("base: base.yaml\nmodel:\n  decoder:\n    name: mlp\n    hidden_dim: 16\n")
    same = load_config(tmp_path / "same.yaml")
    assert same.model.num_slots == 5 and same.model.decoder.num_layers == 2 and same.model.decoder.num_heads == 2
    other = load_config(tmp_path / "other.yaml")  # num_layers is not an MLP decoder key: not carried over
    assert other.model.decoder.name == "mlp" and other.model.decoder.hidden_dim == 16


def test_base_file_mistakes_are_named(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="bases form a loop"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"config file not found: .*missing.yaml \(the base of .*c.yaml\)"):
        load_config(tmp_path / "c.yaml")


def test_derived_values_follow_total_steps_and_an_explicit_value_wins():
    cfg = load_config(CONFIG_DIR / "dias-coco.yaml", ["train.total_steps=60"])
    assert config_warmup_steps(cfg) == 3 and config_val_every(cfg) == 1
    cfg = load_config(CONFIG_DIR / "dias-coco.yaml", ["train.total_steps=60", "optim.warmup_steps=7"])
    assert config_warmup_steps(cfg) == 7
    saved = from_dict(to_dict(load_config(CONFIG_DIR / "dias-coco.yaml")))  # as a run folder keeps it
    resumed = from_dict({**to_dict(saved), "train": {**to_dict(saved)["train"], "total_steps": 2000}})
    assert config_warmup_steps(resumed) == 100  # not the stale 5,000 of the 100,000-step run


def test_a_role_section_holds_exactly_its_class_keys():
    with pytest.raises(ConfigError, match=r"unknown config key model.decoder.hidden_dim.*random_order_transformer"):
        load_config(CONFIG_DIR / "dias-coco.yaml", ["model.decoder.hidden_dim=32"])
    with pytest.raises(ConfigError, match="unknown config key model.initializer.num_heads"):
        load_config(CONFIG_DIR / "dias-coco.yaml", ["model.initializer.num_heads=2"])
    with pytest.raises(
        ConfigError, match=r"model.decoder.name = 'mpl' is not one of .*did you mean model.decoder.name=mlp"
    ):
        load_config(CONFIG_DIR / "dias-coco.yaml", ["model.decoder={name: mpl}"])


def _as_saved_by_dias_0_1(cfg) -> dict:
    """cfg as dias 0.1 saved it: the method a bare name, the objective in `loss`, the re-initialization in model."""
    plain = to_dict(cfg)
    method = plain["model"].pop("method")
    plain["model"] = {"method": method.pop("name"), **plain["model"]}
    if "reinit" in method:
        plain["model"]["reinit"] = method.pop("reinit")
    plain["loss"] = method
    return plain


@pytest.mark.parametrize("name", ["dias-full-coco.yaml", "smoothsa-voc.yaml"])
def test_a_config_saved_by_dias_0_1_loads_in_the_current_layout(name):
    cfg = load_config(CONFIG_DIR / name)
    legacy = _as_saved_by_dias_0_1(cfg)
    assert from_dict(legacy) == cfg  # a saved config.yaml of 0.1 names no version: its layout tells
    assert from_dict(legacy, version="0.1.0") == cfg  # a checkpoint's or an export's dias_version
    if cfg.model.method.name == "smoothsa":
        legacy["model"]["reinit"] = {"enabled": False}  # 0.1 saved DIAS's disabled section for every method
        assert from_dict(legacy) == cfg


def test_a_config_saved_by_early_dias_0_1_loads_in_the_current_layout():
    legacy = _as_saved_by_dias_0_1(load_config(CONFIG_DIR / "dias-coco.yaml"))
    model = legacy["model"]
    slot_attention = model.pop("slot_attention")
    model |= {"num_iters": slot_attention["num_iters"], "slot_mlp_dim": slot_attention["mlp_dim"]}
    model["initializer"] = model["initializer"]["name"]
    model["decoder"] |= {"hidden_dim": 1024, "num_hidden_layers": 3}  # early 0.1 saved every decoder's keys
    assert from_dict(legacy) == load_config(CONFIG_DIR / "dias-coco.yaml")


def test_the_0_1_layout_is_read_until_its_stated_end():
    # When this fails, the release drops upgrade_layout's 0.1 branch and this test with it.
    assert tuple(map(int, dias.__version__.split(".")[:2])) < tuple(map(int, LEGACY_LAYOUT_READ_UNTIL.split(".")))
    saved = yaml.safe_load(yaml.safe_dump(to_dict(load_config(CONFIG_DIR / "dias-coco.yaml"))))
    assert from_dict({**saved, "dias_version": dias.__version__}) == load_config(CONFIG_DIR / "dias-coco.yaml")


def test_save_config_names_the_version_that_wrote_it(tmp_path):
    save_config(load_config(CONFIG_DIR / "smoothsa-coco.yaml"), tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert text.startswith(f"dias_version: {dias.__version__}\n")
    assert load_config(tmp_path / "config.yaml") == load_config(CONFIG_DIR / "smoothsa-coco.yaml")


def test_bases_in_a_list_merge_in_order_then_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("model:\n  num_slots: 5\n  slot_dim: 64\n")
    (tmp_path / "b.yaml").write_text("model:\n  num_slots: 6\ntrain:\n  seed: 1\n")
    (tmp_path / "c.yaml").write_text("base: [a.yaml, b.yaml]\ntrain:\n  seed: 2\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg.model.slot_dim, cfg.model.num_slots, cfg.train.seed) == (64, 6, 2)
    (tmp_path / "d.yaml").write_text("base: {file: a.yaml}\n")
    with pytest.raises(ConfigError, match="must name a file or a list of files"):
        load_config(tmp_path / "d.yaml")


@pytest.mark.parametrize(
    ("name", "num_slots", "total_steps"), [("coco", 7, 100000), ("voc", 6, 50000), ("clevrtex", 11, 50000)]
)
def test_smoothsa_configs_hold_the_official_values(name, num_slots, total_steps):
    cfg = load_config(CONFIG_DIR / f"smoothsa-{name}.yaml")
    assert (cfg.model.method.name, cfg.model.num_slots, cfg.train.total_steps) == ("smoothsa", num_slots, total_steps)
    assert config_warmup_steps(cfg) == total_steps // 20 and config_val_every(cfg) == total_steps // 40
    assert detach_steps(cfg) == total_steps // 10  # the preheater reads detached tokens for the first tenth
    assert cfg.optim.lr == pytest.approx(2e-4) and cfg.optim.final_lr_ratio == pytest.approx(1e-3)
    assert cfg.optim.grad_clip == 1.0 and cfg.data.batch_size == 32 and cfg.eval.batch_size == 32
    assert cfg.model.method.preheat_weight == 100.0 and cfg.model.slot_attention.truncate == "bi-level"
    assert (cfg.model.initializer.name, cfg.model.initializer.num_heads, cfg.model.initializer.ffn_dim) == (
        "preheated",
        4,
        1024,
    )
    dias = load_config(CONFIG_DIR / f"dias-{name}.yaml")  # the rest is DIAS's
    assert (cfg.data, cfg.model.backbone, cfg.model.decoder) == (dias.data, dias.model.backbone, dias.model.decoder)


def test_an_empty_config_file_is_refused_not_read_as_the_defaults(tmp_path):
    for text in ("", "# only a comment\n", "null\n"):
        path = tmp_path / "empty.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=f"config file {path} is empty; .* leave out --config"):
            load_config(path)


def test_a_key_given_twice_names_the_key_and_both_lines(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("model:\n  num_slots: 5\n  decoder:\n    num_layers: 2\n    num_heads: 4\n    num_layers: 3\n")
    with pytest.raises(ConfigError, match=r"base.yaml: key model.decoder.num_layers appears twice, on lines 4 and 6"):
        load_config(base)
    base.write_text("train:\n  seed: 1\nmodel:\n  num_slots: 5\ntrain:\n  seed: 2\n")
    with pytest.raises(ConfigError, match="key train appears twice, on lines 1 and 5; keep one"):
        load_config(base)
    base.write_text("model:\n  ? [num_slots]\n  : 5\n")  # a key that is a list: refused as YAML, no traceback
    with pytest.raises(ConfigError, match=r"base.yaml, line 2, column 5: not valid YAML: found unhashable key"):
        load_config(base)
    base.write_text("model:\n  num_slots: 5\n")  # the same key in a file and its base is a change, not a repeat
    variant = tmp_path / "variant.yaml"
    variant.write_text("base: base.yaml\nmodel:\n  num_slots: 9\n")
    assert load_config(variant).model.num_slots == 9


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", ".inf", ".nan"])
def test_non_finite_floats_are_refused_in_every_float_key(value):
    for key in ("optim.lr", "optim.grad_clip", "model.method.distill_weight", "probe.lr", "optim.betas"):
        given = f"[0.9, {value}]" if key == "optim.betas" else value
        with pytest.raises(ConfigError, match=r"is not a finite number; e.g. ") as info:
            load_config(None, [f"{key}={given}"])
        assert_fix_loads(str(info.value), None)
    with pytest.raises(
        ConfigError, match=re.escape("optim.betas[1] = inf is not a finite number; e.g. optim.betas=[0.9,0.999]")
    ):
        load_config(None, ["optim.betas=[0.9, .inf]"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.total_steps=1e20", "train.total_steps = 1e+20 (a whole number, read as 100000000000000000000) is "
                                   "invalid: it must be in 1 .. 1000000000 (a step count; 10**9 steps would take "
                                   "years); e.g. train.total_steps=50000"),
        ("train.total_steps=100000000000000000000", "it must be in 1 .. 1000000000 (a step count"),
        ("probe.total_steps=2e9", "probe.total_steps = 2000000000.0 (a whole number, read as 2000000000) is invalid"),
        ("model.slot_dim=1e7", "model.slot_dim = 10000000.0 (a whole number, read as 10000000) is invalid: it must "
                               "be in 1 .. 4096 (a layer width"),
        ("model.slot_dim=10000000", "it must be in 1 .. 4096"),
        ("model.slot_attention.mlp_dim=100000", "model.slot_attention.mlp_dim = 100000 is invalid"),
        ("model.slot_dim=2.5", "model.slot_dim = 2.5 is not an integer (a float is taken only when whole, like 2e4); "
                               "e.g. model.slot_dim=256"),
        ("train.total_steps=inf", "train.total_steps = inf is not an integer"),
        ("model.num_slots=100000", f"model.num_slots = 100000 is invalid: it must be {SLOTS}; e.g. model.num_slots=7"),
        ("model.num_slots=257", "model.num_slots = 257 is invalid"),
        ("data.image_size=100000", "data.image_size = 100000 is invalid: it must be in 1 .. 4096"),
        ("model.decoder.mlp_ratio=1e9", "model.decoder.mlp_ratio = 1000000000.0 is invalid: it must be in (0, 8]"),
        ("model.backbone.patch_size=4096", "patch_size = 4096 is invalid: it must be an even number in 2 .. 64"),
        ("model.backbone.input_scale=100", "input_scale = 100 is invalid: it must be in 0.0625 .. 1 (an enlarged"),
        ("model.backbone.input_scale=0.001", "input_scale = 0.001 is invalid: it must be in 0.0625 .. 1"),
    ],
)  # fmt: skip
def test_absurd_sizes_are_refused_at_load_with_the_bound_why_and_a_fix_that_loads(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_config(CONFIG_DIR / "dias-coco.yaml", [override])
    assert_fix_loads(str(info.value), CONFIG_DIR / "dias-coco.yaml")


def test_more_slots_than_the_backbone_s_tokens_are_refused_with_a_fix_that_loads():
    small = ["data.image_size=64", "model.num_slots=200"]  # patch_stats, 8-pixel patches: 8 x 8 tokens
    with pytest.raises(ConfigError) as info:
        load_config(PACKAGED_DEMO, small)
    assert str(info.value) == (
        "config key model.num_slots = 200 is more than the 64 tokens the backbone gives for data.image_size=64: "
        "a slot holds tokens, so at most 64 can hold any; use model.num_slots=64 or fewer, or a larger data.image_size"
    )
    assert_fix_loads(str(info.value), PACKAGED_DEMO, small)


def test_a_backbone_that_tiles_no_image_size_is_refused_on_its_own_key_not_with_a_traceback():
    """No image size up to 4096 tiles into 1e6-pixel patches: the patch size is the mistake to name."""
    for override in ("model.backbone.patch_size=1e6", "model.backbone.input_scale=0.01"):
        with pytest.raises(ConfigError, match=f"config key {re.escape(override.partition('=')[0])} = "):
            load_config(PACKAGED_DEMO, [override, "data.image_size=13"])
    for scale in (1 / 16, 0.3, 1.0):  # within the bounds some image size up to 4096 gives 256 tokens
        vit = ["model.backbone.name=vit_small_patch14_reg4_dinov2", f"model.backbone.input_scale={scale}"]
        with pytest.raises(ConfigError, match="the nearest valid size") as info:
            load_config(PACKAGED_DEMO, [*vit, "model.num_slots=256", "data.image_size=13"])
        assert_fix_loads(str(info.value), PACKAGED_DEMO, [*vit, "model.num_slots=256"])


def test_yaml_merge_keys_still_work_and_the_mapping_s_own_key_wins(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("train: &run\n  seed: 3\n  device: cpu\neval:\n  <<: *run\n  device: auto\n")
    cfg = load_config(path)
    assert (cfg.eval.seed, cfg.eval.device, cfg.train.device) == (3, "auto", "cpu")
    path.write_text("train: &run\n  seed: 3\neval:\n  <<: *run\n  seed: 4\n  seed: 5\n")
    with pytest.raises(ConfigError, match="key eval.seed appears twice, on lines 5 and 6"):
        load_config(path)


def test_an_integer_written_as_a_float_is_taken():
    cfg = load_config(None, ["train.total_steps=2e4", "model.slot_dim=128.0"])
    assert (cfg.train.total_steps, cfg.model.slot_dim) == (20000, 128)
    assert isinstance(cfg.train.total_steps, int)


@pytest.mark.parametrize(
    ("config", "size", "message"),
    [
        ("demo.yaml", 13, "8-pixel patches: it must be a multiple of model.backbone.patch_size=8; "
                          "the nearest valid size is data.image_size=32"),  # 8 to 24 give under 10 tokens
        ("demo.yaml", 12, "the nearest valid size is data.image_size=32"),
        ("demo.yaml", 60, "the nearest valid sizes are 56 and 64, e.g. data.image_size=64"),
        ("dias-coco.yaml", 13, "14-pixel patches: it must be a size whose rescale by model.backbone.input_scale="
                               "0.875 is a multiple of 14; the nearest valid size is data.image_size=48"),
        ("dias-coco.yaml", 250, "the nearest valid sizes are 241 and 256, e.g. data.image_size=256"),
    ],
)  # fmt: skip
def test_an_image_size_the_backbone_cannot_patch_is_refused_naming_the_patch_and_the_nearest_sizes(
    config, size, message
):
    with pytest.raises(ConfigError, match=re.escape(f"data.image_size = {size} does not split into the")) as info:
        load_config(CONFIG_DIR / config, [f"data.image_size={size}"])
    assert message in str(info.value)
    for suggested in re.findall(r"data.image_size=(\d+)", str(info.value)):
        load_config(CONFIG_DIR / config, [f"data.image_size={suggested}"])  # the suggested fix loads
