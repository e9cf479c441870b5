"""Pruning + re-initialized aggregation wired into the model (the paper's steps (a)-(c))."""

import pytest
import torch

from dias.masks import masks_from_attention
from dias.methods.dias.method import teacher_index
from dias.methods.dias.model import build_model
from dias.methods.dias.objective import select_distillation_pair


@pytest.fixture()
def make_model(small_demo_config):
    def make(*overrides):
        torch.manual_seed(0)
        return build_model(small_demo_config(*overrides))

    return make


@pytest.fixture()
def features():
    return torch.randn(2, 64, 64, generator=torch.Generator().manual_seed(1))


def _duplicated_init(model, batch_size=2):
    # Slots 0-2 identical, 3-4 identical: pruning must keep exactly slots 0, 3, 5, 6.
    init = model.initializer(batch_size)
    init[:, 1] = init[:, 2] = init[:, 0]
    init[:, 4] = init[:, 3]
    return init


def test_pruned_slots_get_no_attention_and_never_win(make_model, features):
    model = make_model("model.method.reinit.enabled=true", "model.method.reinit.threshold=0.01").eval()
    with torch.no_grad():
        out = model(features=features, init_slots=_duplicated_init(model))
    expected = torch.tensor([True, False, False, True, False, True, True]).expand(2, 7)
    assert torch.equal(out.keep, expected)
    assert out.attn.shape[0] == 3 + 1  # T iterations + one re-initialized
    pruned = ~out.keep
    assert torch.all(out.attn[-1][pruned] == 0)
    assert torch.all(out.decoder_attn[pruned] == 0)
    assert torch.all(out.slots[pruned] == 0)
    labels = masks_from_attention(out.decoder_attn, 64)
    for b in range(2):
        assert set(labels[b].unique().tolist()) <= set(torch.nonzero(out.keep[b]).squeeze(1).tolist())
    torch.testing.assert_close(out.decoder_attn.sum(dim=1), torch.ones(2, 64))


def test_unmasked_variant_keeps_zero_slots_as_queries(make_model, features):
    model = make_model(
        "model.method.reinit.enabled=true",
        "model.method.reinit.threshold=0.01",
        "model.method.reinit.mask_pruned=false",
    )
    with torch.no_grad():
        out = model.eval()(features=features, init_slots=_duplicated_init(model))
    assert (~out.keep).any()
    assert torch.all(out.decoder_attn[~out.keep] > 0)  # still valid keys in the decoder


def _release_and_full(make_model, features, release_overrides, full_overrides, reinit):
    """One forward of a release model and of a full-DIAS model with its weights, in training mode, from the same
    initial slots and decoder mask."""
    release = make_model(*release_overrides).train()
    full = make_model("model.method.reinit.enabled=true", *full_overrides).train()
    full.load_state_dict(release.state_dict())
    pinned = {
        "init_slots": release.initializer(2),
        "perm": torch.stack([torch.randperm(64) for _ in range(2)]),
        "visible": torch.arange(64)[None] < torch.tensor([[10], [40]]),
    }
    return release(features=features, **pinned), full(features=features, reinit=reinit, **pinned)


def test_reinit_off_equals_the_release_model(make_model, features):
    a, b = _release_and_full(make_model, features, (), (), reinit=False)
    assert b.keep is None
    for name in ("slots", "attn", "recon", "decoder_attn"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_eval_always_prunes_and_teacher_is_the_reinitialized_map(make_model, features):
    model = make_model(
        "model.method.reinit.enabled=true", "model.method.reinit.prob=0.0", "model.method.reinit.num_iters=2"
    ).eval()
    with torch.no_grad():
        out = model(features=features)
    assert out.keep is not None and out.attn.shape[0] == 3 + 2
    student, teacher = select_distillation_pair(out.attn)
    assert torch.equal(student, out.attn[0]) and torch.equal(teacher, out.attn[4])


def test_the_first_aggregation_can_be_the_teacher(make_model, small_demo_config, features):
    overrides = ("model.method.reinit.enabled=true", "model.method.reinit.num_iters=2")
    model = make_model(*overrides).eval()
    with torch.no_grad():
        out = model(features=features)
    assert out.attn.shape[0] == 3 + 2
    for teacher, expected in (("reinit", 4), ("aggregation", 2)):
        cfg = small_demo_config(*overrides, f"model.method.reinit.teacher={teacher}")
        student, chosen = select_distillation_pair(out.attn, teacher_index(cfg))
        assert torch.equal(student, out.attn[0]) and torch.equal(chosen, out.attn[expected]), teacher
    # A batch that does not prune (the scheduled coin) has the T maps only: its last is the first aggregation's.
    with torch.no_grad():
        plain = model(features=features, reinit=False)
    cfg = small_demo_config(*overrides, "model.method.reinit.teacher=aggregation")
    assert torch.equal(select_distillation_pair(plain.attn, teacher_index(cfg))[1], plain.attn[2])
    with pytest.raises(ValueError, match="at least two"):
        select_distillation_pair(out.attn[:1])


def test_gradient_reaches_the_initial_slots_through_the_merge(make_model, features):
    model = make_model("model.method.reinit.enabled=true", "model.method.reinit.threshold=0.01").eval()
    init = _duplicated_init(model).detach().requires_grad_(True)
    out = model(features=features, init_slots=init)
    out.recon.square().mean().backward()
    assert init.grad is not None and init.grad.abs().sum() > 0


def test_forcing_reinit_without_settings_is_an_error(make_model, features):
    with pytest.raises(ValueError, match="model.method.reinit.enabled=true"):
        make_model()(features=features, reinit=True)


def test_reinit_without_merging_is_one_more_iteration(make_model, features):
    # At threshold 0 nothing merges, so re-initialization is the release with T + num_iters iterations
    # (the same module, the same tokens): what the ablation's "threshold 0" row measures.
    a, b = _release_and_full(
        make_model, features, ("model.slot_attention.num_iters=4",), ("model.method.reinit.threshold=0.0",), True
    )
    assert b.keep.all() and b.attn.shape[0] == a.attn.shape[0] == 4
    for name in ("slots", "attn", "recon", "decoder_attn"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=0, atol=1e-6, msg=name)
