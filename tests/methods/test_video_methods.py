"""The video methods through the seam: defaults, load-time refusals, plans, objective equations, the official-weights
refusal of the other method, and a tiny trained run scored by `dias eval` with the video baselines."""

import json
from pathlib import Path

import pytest
import torch
from tiny import TINY_VIDEO

from dias.commands.evaluate import run_eval
from dias.config import from_dict, load_config
from dias.io import WeightsMismatchError
from dias.losses import reconstruction_loss
from dias.methods import METHODS, build_model, method_of
from dias.methods.official import official_key_map
from dias.methods.randsfq.model import RandSFQ
from dias.methods.randsfq.objective import slot_contrast_loss
from dias.methods.randsfq.official import RANDSFQ_NAMES
from dias.methods.smoothsa_video.model import SmoothSAVideo
from dias.methods.smoothsa_video.official import SMOOTHSA_VIDEO_NAMES
from dias.schema import ConfigError
from dias.train.loop import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny(config: str, *overrides: str):
    return load_config(CONFIGS / config, [*TINY_VIDEO, *overrides])


@pytest.mark.parametrize(
    ("config", "cls", "initializer", "truncate"),
    [
        ("smoothsa-video-movi-c.yaml", SmoothSAVideo, "preheated", "bi-level"),
        ("randsfq-ytvis.yaml", RandSFQ, "normal_shared", None),
    ],
)
def test_video_configs_pick_their_model_and_derive_the_window(config, cls, initializer, truncate):
    cfg = load_config(CONFIGS / config)
    assert (cfg.model.initializer.name, cfg.model.slot_attention.truncate) == (initializer, truncate)
    with torch.device("meta"):
        model = build_model(cfg)
    assert type(model) is cls
    assert model.transitioner.time_embed.num_embeddings == cfg.data.clip_length  # dt = the training clip length
    assert load_config(CONFIGS / config, ["model.method.window=9"]).model.method.window == 9


@pytest.mark.parametrize(
    ("name", "initializer", "truncate"),
    [("smoothsa_video", "preheated", "bi-level"), ("randsfq", "normal_shared", None)],
)
def test_model_method_alone_brings_a_video_methods_defaults(name, initializer, truncate):
    cfg = from_dict({"data": {"name": "ytvis"}, "model": {"method": name}})
    assert (cfg.model.initializer.name, cfg.model.slot_attention.truncate) == (initializer, truncate)
    assert (cfg.model.method.contrast_weight, cfg.model.method.contrast_tau) == (0.5, 0.1)
    assert (cfg.model.method.transit_dropout, cfg.model.method.conditional) == (0.5, False)


@pytest.mark.parametrize(
    ("config", "overrides", "key"),
    [
        ("randsfq-movi-c.yaml", ["data.name=coco"], "data.name"),  # a video method on an image dataset
        ("dias-coco.yaml", ["data.name=movi_c"], "data.name"),  # an image method on a video dataset
        ("randsfq-movi-c.yaml", ["model.num_slots=7"], "model.num_slots"),  # conditional: one slot per box (11)
        ("smoothsa-video-movi-e.yaml", ["model.num_slots=11"], "model.num_slots"),
        ("randsfq-movi-c.yaml", ["model.slot_attention.truncate=bi-level"], "model.slot_attention.truncate"),
        ("smoothsa-video-movi-c.yaml", ["model.initializer=normal_shared"], "model.initializer.name"),
        ("randsfq-movi-c.yaml", ["eval.mask_source=attn:0"], "eval.mask_source"),
        ("randsfq-movi-c.yaml", ["data.clip_length=1"], "data.clip_length"),
    ],
)
def test_what_a_video_method_cannot_run_is_refused_at_load_naming_the_key(config, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(CONFIGS / config, overrides)


def test_unconditional_k_is_free_and_max_objects_moves_the_conditional_one():
    assert load_config(CONFIGS / "randsfq-ytvis.yaml", ["model.num_slots=9"]).model.num_slots == 9
    assert (
        load_config(CONFIGS / "randsfq-movi-c.yaml", ["model.num_slots=7", "data.max_objects=7"]).model.num_slots == 7
    )


def test_plans_hold_the_release_weights_and_smoothsa_video_detaches_the_preheater_for_a_tenth():
    cfg = load_config(CONFIGS / "smoothsa-video-movi-c.yaml", ["train.total_steps=100"])
    method = method_of(cfg)
    assert method.term_names == ("recon", "contrast", "preheat")
    for step, detached in ((0, True), (9, True), (10, False), (99, False)):
        plan = method.plan(cfg, step)
        assert plan.forward_options == {"detach_preheat": detached}
        assert plan.loss_weights == {"contrast": 0.5, "preheat": 100.0}
    cfg = load_config(CONFIGS / "randsfq-movi-d.yaml")
    plan = method_of(cfg).plan(cfg, 0)
    assert (plan.forward_options, plan.loss_weights) == ({}, {"contrast": 0.5})
    assert method_of(cfg).term_names == ("recon", "contrast")


def _video_output(model, cfg, *, requires_grad=True):
    torch.manual_seed(0)
    b, t = 2, 3
    n = 16
    video = torch.randint(0, 256, (b, t, 3, cfg.data.image_size, cfg.data.image_size), dtype=torch.uint8)
    boxes = torch.rand(b, t, cfg.model.num_slots, 4) if model.conditional else None
    return model(images=video, boxes=boxes), n


def test_smoothsa_video_objective_is_recon_plus_weighted_contrast_and_frame0_preheat_with_slots_detached():
    cfg = tiny("smoothsa-video-movi-c.yaml", "model.method.contrast_tau=0.2", "model.method.preheat_weight=3")
    model = build_model(cfg).train()
    out, _ = _video_output(model, cfg)
    method = method_of(cfg)
    objective = method.objective(out, method.plan(cfg, 0), cfg)
    recon = reconstruction_loss(out.recon, out.features)
    contrast = slot_contrast_loss(out.slots, tau=0.2)
    preheat = torch.nn.functional.mse_loss(out.qinit, out.slots[:, 0].detach())
    torch.testing.assert_close(objective.loss, recon + 0.5 * contrast + 3 * preheat)
    torch.testing.assert_close(objective.terms, torch.stack([recon, contrast, preheat]).detach())
    # the preheat term reaches the preheater, never the slots it regresses onto (frame 0's, detached)
    slots_grad, qinit_grad = torch.autograd.grad(3 * preheat, [out.slots, out.qinit], allow_unused=True)
    assert slots_grad is None or not slots_grad.any()
    assert qinit_grad.abs().sum() > 0
    # SlotContrast reads every frame's slots
    (contrast_grad,) = torch.autograd.grad(contrast, [out.slots])
    assert all(contrast_grad[:, t].abs().sum() > 0 for t in range(out.slots.shape[1]))


def test_randsfq_objective_is_recon_plus_weighted_contrast():
    cfg = tiny("randsfq-movi-c.yaml", "model.method.contrast_weight=2")
    model = build_model(cfg).train()
    out, _ = _video_output(model, cfg)
    objective = method_of(cfg).objective(out, method_of(cfg).plan(cfg, 0), cfg)
    expected = reconstruction_loss(out.recon, out.features) + 2 * slot_contrast_loss(out.slots, tau=0.1)
    torch.testing.assert_close(objective.loss, expected)


def _official_state_dict(model, names) -> dict[str, torch.Tensor]:
    """The model's weights under the release's "m."-prefixed names."""
    ours = model.state_dict()
    return {official: ours[key] for official, key in official_key_map(model, names).items()}


@pytest.mark.parametrize("conditional", ["true", "false"])
def test_official_weights_of_the_other_video_method_are_refused_naming_the_keys(conditional):
    smoothsa_cfg = tiny("smoothsa-video-movi-c.yaml", f"model.method.conditional={conditional}")
    randsfq_cfg = tiny("randsfq-movi-c.yaml", f"model.method.conditional={conditional}")
    smoothsa, randsfq = build_model(smoothsa_cfg), build_model(randsfq_cfg)
    smoothsa_weights = _official_state_dict(smoothsa, SMOOTHSA_VIDEO_NAMES)
    randsfq_weights = _official_state_dict(randsfq, RANDSFQ_NAMES)
    METHODS["smoothsa_video"].load_official(build_model(smoothsa_cfg), smoothsa_weights)  # its own loads
    METHODS["randsfq"].load_official(build_model(randsfq_cfg), randsfq_weights)
    with pytest.raises(WeightsMismatchError, match=r"m\.initializ\."):
        METHODS["randsfq"].load_official(randsfq, smoothsa_weights)
    with pytest.raises(WeightsMismatchError, match=r"m\.initializ\."):
        METHODS["smoothsa_video"].load_official(smoothsa, randsfq_weights)


@pytest.mark.parametrize("config", ["smoothsa-video-movi-c.yaml", "randsfq-ytvis.yaml"])
def test_a_tiny_video_run_is_scored_with_the_video_baselines_and_its_clip_length(config, tiny_video_root, tmp_path):
    cfg = tiny(
        config, f"data.root={tiny_video_root}", "train.total_steps=2", "train.val_every=2", "data.eval_clip_length=2"
    )
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.status == "done" and {"fg_ari", "videosaur/fg_ari", "frame/fg_ari", "kmeans/fg_ari"} <= set(
        result.val
    )
    report = run_eval(tmp_path / "run" / "last.pt", out_dir=tmp_path / "eval", progress=False)
    assert set(report["metrics"]) == {
        "ari", "fg_ari", "mbo", "miou", "videosaur/fg_ari", "videosaur/mbo",
        "frame/ari", "frame/fg_ari", "frame/mbo", "frame/miou",
    }  # fmt: skip
    assert set(report["baselines"]) == {"grid", "voronoi", "kmeans"}
    assert set(report["baselines"]["kmeans"]) == set(report["metrics"])
    card = report["card"]
    assert card["eval_clip_length"] == 2 and card["clip_frames"] == [2]
    assert card["num_clips"] == 4  # 2 validation videos of 4 frames, cut into windows of 2
    assert json.loads(Path(report["path"]).read_text())["card"]["eval_clip_length"] == 2
