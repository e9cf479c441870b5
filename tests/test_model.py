"""DIAS wiring: inputs, detaches, frozen backbone, official-weight loading, segmentation."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny import TINY

from dias.config import load_config
from dias.io import WeightsMismatchError
from dias.losses import reconstruction_loss
from dias.masks import masks_from_attention
from dias.methods import build_model
from dias.methods.dias.model import DIAS
from dias.methods.dias.objective import distillation_loss, select_distillation_pair
from dias.methods.dias.official import dias_official_key_map, load_official_weights
from dias.schema import num_attention_maps

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
MODEL = [  # the suite's tiny run (tests/tiny.py) with a smaller, two-layer model
    *TINY,
    "model.backbone.name=patch_stats",
    "model.num_slots=4",
    "model.slot_dim=16",
    "model.slot_attention.mlp_dim=32",
    "model.decoder.num_layers=2",
    "model.decoder.mlp_ratio=2.0",
]
B, K, N, C, D = 2, 4, 16, 64, 16


@pytest.fixture
def model() -> DIAS:
    torch.manual_seed(0)
    return build_model(load_config(None, MODEL))


def _images(size=32):
    return torch.randint(0, 256, (B, 3, size, size), dtype=torch.uint8)


def test_forward_shapes(model):
    for mode in (True, False):
        out = model.train(mode)(images=_images())
        assert out.features.shape == out.inputs.shape == out.recon.shape == (B, N, C)
        assert out.init_slots.shape == out.slots.shape == (B, K, D)
        assert out.attn.shape == (3, B, K, N) and out.decoder_attn.shape == (B, K, N)
        assert out.decoder_query.shape == (B, N, C) and out.decoder_memory.shape == (B, K, C)


def test_exactly_one_input(model):
    with pytest.raises(ValueError, match="exactly one"):
        model()
    with pytest.raises(ValueError, match="exactly one"):
        model(images=_images(), features=torch.randn(B, N, C))


def test_init_slots_and_num_slots(model):
    features, init = torch.randn(B, N, C), torch.randn(B, K, D)
    model.eval()
    a, b = model(features=features, init_slots=init), model(features=features, init_slots=init)
    assert torch.equal(a.init_slots, init) and torch.equal(a.recon, b.recon)
    assert model(features=features, num_slots=6).slots.shape == (B, 6, D)


def test_losses_train_the_model_but_not_the_features(model):
    features = torch.randn(B, N, C, requires_grad=True)
    out = model.train()(features=features)
    assert not out.features.requires_grad
    loss = reconstruction_loss(out.recon, out.features) + distillation_loss(*select_distillation_pair(out.attn))
    loss.backward()
    assert features.grad is None
    assert model.project.fc1.weight.grad is not None and model.initializer.mean.grad is not None


def test_distillation_gradient_skips_the_teacher_iterations(model):
    """The teacher (last iteration) is detached: the last iteration's query path gets no distill grad."""
    model.slot_attention.num_iters = 2
    out = model.train()(features=torch.randn(B, N, C))
    distillation_loss(*select_distillation_pair(out.attn)).backward()
    # Only the first iteration feeds the student; the GRU acts after it, so it gets no gradient.
    grad = model.slot_attention.gru.weight_ih.grad
    assert grad is None or torch.all(grad == 0)
    assert model.slot_attention.query_proj.weight.grad.abs().sum() > 0


def test_slot_mask_reaches_slot_attention_and_decoder(model):
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[:, 0] = False
    out = model.eval()(features=torch.randn(B, N, C), slot_mask=mask)
    assert torch.all(out.attn[:, :, 0] == 0) and torch.all(out.decoder_attn[:, 0] == 0)


def test_init_weights(model):
    assert torch.all(model.project.fc1.bias == 0) and torch.all(model.slot_attention.gru.bias_hh == 0)
    first, second = model.decoder.layers[0], model.decoder.layers[1]
    torch.testing.assert_close(first.mlp.fc1.weight, second.mlp.fc1.weight)
    torch.testing.assert_close(first.cross_attn.in_proj.weight, second.cross_attn.in_proj.weight)


def _official_state(model, shift=0.5):
    ours = model.state_dict()
    return {official: ours[name] + shift for official, name in dias_official_key_map(model).items()}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_official_weights_round_trip(model, tmp_path, suffix):
    state = _official_state(model)
    path = tmp_path / f"release{suffix}"
    torch.save({"state_dict": state}, path) if suffix == ".pth" else save_file(state, str(path))
    load_official_weights(model, path)
    torch.testing.assert_close(model.initializer.log_std, state["m.initializ.logstd"])
    torch.testing.assert_close(model.decoder.input_norm.weight, state["m.decode.norm0.weight"])
    torch.testing.assert_close(
        model.decoder.layers[1].cross_attn.in_proj.weight,
        state["m.decode.backbone.layers.1.multihead_attn.in_proj_weight"],
    )


def test_load_official_weights_errors(model):
    state = _official_state(model)
    del state["m.aggregat.rnn.bias_ih"]
    state["m.aggregat.extra"] = torch.zeros(1)
    state["m.decode.mask_token"] = torch.zeros(1, 1, 3)
    with pytest.raises(WeightsMismatchError, match="rnn.bias_ih.*aggregat.extra.*mask_token"):
        load_official_weights(model, state)
    backbone_key = {"m.encode_backbone.1.cls_token": torch.zeros(1, 1, 384)}  # patch_stats has no weights
    with pytest.raises(WeightsMismatchError, match="unexpected"):
        load_official_weights(model, {**_official_state(model), **backbone_key})


def test_frozen_vit_backbone_in_a_training_model():
    model = build_model(load_config(None, ["model.slot_dim=16", "model.decoder.num_layers=1"]))
    model.train()
    assert not model.backbone.training and model.project.training
    out = model(images=torch.randint(0, 256, (1, 3, 256, 256), dtype=torch.uint8))
    reconstruction_loss(out.recon, out.features).backward()
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.parameters())
    assert out.features.shape == (1, 256, 384)


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_builds_and_runs(path):
    cfg = load_config(path, ["model.backbone.weights=null"])  # the layout is tested here, not the weights
    model = build_model(cfg)
    h, w = model.backbone.grid_size(cfg.data.image_size)
    if cfg.model.method.video:  # a clip of 3 frames; conditional models read frame 0's boxes
        features = torch.randn(1, 3, h * w, model.backbone.feature_dim)
        boxes = torch.rand(1, 3, cfg.model.num_slots, 4) if model.conditional else None
        out = model.train()(features=features, boxes=boxes)
        assert out.recon.shape == features.shape
        assert out.attn.shape == out.decoder_attn.shape == (1, 3, cfg.model.num_slots, h * w)
        return
    features = torch.randn(1, h * w, model.backbone.feature_dim)
    out = model.train()(features=features)
    assert out.recon.shape == features.shape
    assert out.attn.shape == (num_attention_maps(cfg.model), 1, cfg.model.num_slots, h * w)


def test_mlp_decoder_model():
    model = build_model(load_config(None, [*MODEL, "model.decoder={name: mlp, hidden_dim: 32}"]))
    out = model(features=torch.randn(B, N, C))
    assert out.recon.shape == (B, N, C) and out.decoder_query is None


def test_masks_from_attention():
    attn = torch.zeros(B, K, 4, 4)
    attn[:, 2] = 1.0
    attn[0, 1, :2] = 2.0
    seg = masks_from_attention(attn.flatten(2), 8)
    assert seg.shape == (B, 8, 8) and seg.dtype == torch.long
    assert torch.equal(seg, masks_from_attention(attn, (8, 8)))
    assert torch.all(seg[1] == 2) and torch.all(seg[0, :3] == 1) and torch.all(seg[0, 5:] == 2)
    with pytest.raises(ValueError, match="square grid"):
        masks_from_attention(torch.rand(B, K, 15), 8)


@pytest.mark.parametrize("shape", [(1, 5, 16), (1, 5, 4, 4)])
def test_masks_every_image_shares_are_upsampled_once_to_the_same_labels(shape):
    shared = torch.rand(shape).expand(3, *shape[1:])  # as dias.baselines gives the grid and Voronoi partitions
    labels = masks_from_attention(shared, (32, 32))
    assert torch.equal(labels, masks_from_attention(shared.contiguous(), (32, 32))) and labels.stride(0) == 0
    own = torch.rand(3, *shape[1:])  # per-image masks: upsampled image by image
    assert torch.equal(masks_from_attention(own, (32, 32))[1], masks_from_attention(own[1:2], (32, 32))[0])
