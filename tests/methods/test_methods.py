"""The method seam: the registry, each method's plan (schedules, forward options) and objective equations."""

import typing
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_config

from dias.config import load_config, to_dict
from dias.losses import reconstruction_loss
from dias.methods import METHODS, build_model, method_of
from dias.methods.dias.model import DIAS
from dias.methods.dias.objective import distill_weight_at, distillation_loss
from dias.methods.smoothsa.model import SmoothSA
from dias.schema import ConfigError, MethodConfig

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
# the demo config names the learned initializer; SmoothSA's defaults bring truncation, not the preheater over it
SMOOTHSA_TINY = ["model.method=smoothsa", "model.initializer=preheated"]


def test_the_registry_is_the_one_list_of_names_and_each_section_is_named_by_it():
    for name, method in METHODS.items():
        assert method.name == name and issubclass(method.config, MethodConfig)
        assert typing.get_args(typing.get_type_hints(method.config)["name"]) == (name,)


def test_one_override_switches_the_method_and_brings_its_defaults():
    dias = load_config(CONFIGS / "dias-coco.yaml")
    smoothsa = load_config(CONFIGS / "dias-coco.yaml", ["model.method=smoothsa"])
    assert (smoothsa.model.method.name, smoothsa.model.initializer.name) == ("smoothsa", "preheated")
    assert smoothsa.model.slot_attention.truncate == "bi-level" and dias.model.slot_attention.truncate is None
    assert to_dict(smoothsa) == to_dict(load_config(CONFIGS / "smoothsa-coco.yaml", ["train.out_dir=runs/dias-coco"]))
    back = load_config(CONFIGS / "smoothsa-coco.yaml", ["model.method=dias", "model.initializer=normal_shared"])
    assert back.model.method == dias.model.method  # the other method's keys are gone with its section


@pytest.mark.parametrize(("config", "cls"), [("dias-coco.yaml", DIAS), ("smoothsa-coco.yaml", SmoothSA)])
def test_model_method_picks_the_model(config, cls):
    with torch.device("meta"):
        assert type(build_model(load_config(CONFIGS / config))) is cls


def test_dias_plan_is_the_cosine_distillation_ramp_and_no_coin_without_reinit():
    cfg = load_config(CONFIGS / "dias-coco.yaml", ["train.total_steps=100"])
    method = method_of(cfg)
    for step in (0, 1, 50, 99):
        plan = method.plan(cfg, step)
        assert plan.loss_weights["distill"] == distill_weight_at(step, 100, 1.0, "cosine")
        assert plan.logged == {"distill_weight": plan.loss_weights["distill"]}
        assert plan.forward_options == {"reinit": None}
    full = load_config(
        CONFIGS / "dias-full-coco.yaml", ["model.method.reinit.prob=1.0", "model.method.reinit.prob_schedule=constant"]
    )
    assert method_of(full).plan(full, 0).forward_options == {"reinit": True}


def test_dias_objective_is_reconstruction_plus_weighted_distillation(tiny_root):
    cfg = tiny_config(tiny_root, "model.initializer=normal_shared")
    method, model = method_of(cfg), build_model(cfg).train()
    torch.manual_seed(0)
    out = model(images=torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    plan = method.plan(cfg, cfg.train.total_steps // 2)  # weight 0.5
    objective = method.objective(out, plan, cfg)
    recon = F.mse_loss(out.recon, out.features)
    distill = distillation_loss(out.attn[0], out.attn[-1], form="prob")
    torch.testing.assert_close(objective.loss, recon + 0.5 * distill)
    torch.testing.assert_close(objective.terms, torch.stack([recon, distill]).detach())
    assert method.stat_names == ("loss", "recon", "distill", "grad_norm")


def test_smoothsa_plan_detaches_the_preheater_for_the_first_tenth_of_the_run():
    cfg = load_config(CONFIGS / "smoothsa-coco.yaml")  # 100,000 steps: detached for steps 0 .. 9,999
    method = method_of(cfg)
    assert method.plan(cfg, 0).forward_options == {"detach_preheat": True}
    assert method.plan(cfg, 9_999).forward_options == {"detach_preheat": True}
    assert method.plan(cfg, 10_000).forward_options == {"detach_preheat": False}
    assert method.plan(cfg, 0).loss_weights == {"preheat": 100.0}
    shorter = load_config(CONFIGS / "smoothsa-coco.yaml", ["train.total_steps=60"])  # derived, not stale
    assert method.plan(shorter, 5).forward_options == {"detach_preheat": True}
    assert method.plan(shorter, 6).forward_options == {"detach_preheat": False}
    given = load_config(CONFIGS / "smoothsa-coco.yaml", ["model.method.detach_steps=0"])
    assert method.plan(given, 0).forward_options == {"detach_preheat": False}


def test_smoothsa_objective_and_where_its_preheat_term_sends_gradient(tiny_root):
    cfg = tiny_config(tiny_root, *SMOOTHSA_TINY)
    method, model = method_of(cfg), build_model(cfg).train()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    for detach in (True, False):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        out = model(images=images, detach_preheat=detach)
        plan = method.plan(cfg, 0)
        objective = method.objective(out, plan, cfg)
        recon = reconstruction_loss(out.recon, out.features)
        preheat = F.mse_loss(out.qinit, out.slots.detach())
        torch.testing.assert_close(objective.loss, recon + 100.0 * preheat)
        (100.0 * preheat).backward()  # the preheat term alone
        assert all(p.grad is None for p in model.decoder.parameters())  # its target is the detached slots
        assert all(p.grad is None for p in model.slot_attention.parameters())
        assert any(p.grad is not None for p in model.preheater.parameters())
        reached_projection = any(p.grad is not None for p in model.project.parameters())
        assert reached_projection is (not detach)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["model.method=smoothsa"], r"'smoothsa' does not fit .* model.initializer.name = 'learned' \(use"),
        (["model.initializer=preheated"], "model.method.name = 'dias' does not fit this config"),
        (
            [*SMOOTHSA_TINY, "model.method.reinit.enabled=true"],
            r"the section model.method.reinit \(not keys of smoothsa",
        ),
        ([*SMOOTHSA_TINY, "model.method.distill_weight=1"], r"model.method.distill_weight = 1 \(not keys of smoothsa"),
        (["model.method.preheat_weight=1"], r"model.method.preheat_weight = 1 \(not keys of dias"),
        ([*SMOOTHSA_TINY, "model.decoder=mlp"], "SmoothSA uses the random-order transformer decoder"),
        (["model.slot_attention.num_iters=1"], "model.slot_attention.num_iters = 1 .*too few for DIAS"),
        (["model.method=slotattention"], "model.method.name = 'slotattention' is not one of 'dias', 'smoothsa'"),
        (["loss.distill_weight=1"], "unknown config key loss"),
    ],
)
def test_a_method_and_its_parts_must_fit(override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(None, *override)
