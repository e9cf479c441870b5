"""Our SmoothSA against outputs, losses and gradients recorded from the official release (CPU float32).

The fixture, tests/fixtures/smoothsa_seed0.pt (its format: tests/fixtures/README.md), holds the release's
non-backbone weights, backbone features, every random draw and every intermediate of three passes: eval,
train, and train with the preheater's detach flag off. We inject the draws and compare everything else,
gradients included. DIAS_SMOOTHSA_FIXTURE=PATH runs these tests on another file in that format (any K).
"""

import csv
import dataclasses
import os
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from equivalence import assert_segmentation_matches_except_at_ties

from dias.io import WeightsMismatchError
from dias.losses import reconstruction_loss
from dias.methods.base import SlotOutput
from dias.methods.smoothsa.model import SmoothSA, SmoothSAOutput, build_smoothsa
from dias.methods.smoothsa.objective import preheat_loss
from dias.methods.smoothsa.official import load_official_smoothsa_weights, smoothsa_official_key_map
from dias.modules.backbone import OFFICIAL_BACKBONE_PREFIX, PatchStats, build_backbone
from dias.modules.preheater import Preheater
from dias.modules.slot_attention import SlotAttention
from dias.schema import PreheatedInitializerConfig, SlotAttentionConfig, TransformerDecoderConfig

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO / "tests" / "fixtures"
FIXTURE_ENV = "DIAS_SMOOTHSA_FIXTURE"
FIXTURE = Path(os.environ.get(FIXTURE_ENV, FIXTURE_DIR / "smoothsa_seed0.pt"))
DIAS_MANIFEST = FIXTURE_DIR / "state_dict_manifest.tsv"
TOL = dict(atol=1e-4, rtol=1e-4)
GRAD_REL, GRAD_ABS = 1e-3, 1e-6  # full gradients: max |ours - ref| <= GRAD_REL * max |ref| + GRAD_ABS
SKETCH_ABS = 1e-5  # row and column sums: the same with this absolute floor
NORM_RTOL, NORM_ATOL = 1e-3, 1e-9  # the floor admits aggregat.norm1q.bias: analytically 0, float noise (~1e-10)
PASSES = ("eval", "train", "train_nodetach")
TRAIN_PASSES = pytest.mark.parametrize("run", PASSES[1:], indirect=True)  # the passes with a backward
PREHEAT_WEIGHT = 100.0
FLAG_KEY = "m.initializ.detach_flag"
VIT_S = "vit_small_patch14_reg4_dinov2"
# The release's model, the same in its three image configs (https://github.com/Genera1Z/SmoothSA,
# config-smoothsa/smoothsa_r-{coco,voc,clevrtex}.py) but for K, which comes from the fixture.
ARCHITECTURE = dict(
    image_size=256,
    slot_dim=256,
    slot_attention=SlotAttentionConfig(num_iters=3, mlp_dim=1024, truncate="bi-level"),
    # int(256 * 0.1) - 1 = 24 visible tokens in the short case, as released
    decoder=TransformerDecoderConfig(
        num_layers=4, num_heads=4, mlp_ratio=4.0, visible_short_prob=0.5, visible_short_fraction=0.1
    ),
    preheater=PreheatedInitializerConfig(num_heads=4, ffn_dim=1024),
)


@pytest.fixture(scope="module")
def fixture():
    assert FIXTURE.is_file(), f"SmoothSA fixture not found at {FIXTURE}"  # it ships with the repository
    return torch.load(FIXTURE, weights_only=True)


def _build(num_slots: int, feature_dim: int = 384) -> SmoothSA:
    # Features are injected, so any backbone with a 16x16 grid at 256 px will do: PatchStats has no weights.
    return build_smoothsa(PatchStats(patch_size=16, feature_dim=feature_dim), num_slots=num_slots, **ARCHITECTURE)


@pytest.fixture(scope="module")
def model(fixture):
    model = _build(int(fixture["num_slots"]), fixture["features"].shape[-1])
    load_official_smoothsa_weights(model, {k: v.float() for k, v in fixture["weights"].items()})
    return model


def _draws(fixture, name: str) -> dict:
    """The recorded random draws of a pass (train_nodetach replays train's) as forward keywords."""
    if name == "eval":
        return dict(init_noise=fixture["eval_noise_init"])
    return dict(
        init_noise=fixture["train_noise_init"],
        query_noise=fixture["train_noise_query"],
        perm=fixture["train_perm_idxs"],
        visible=fixture["train_visible_mask"],
    )


class Recorder:
    """Captures the intermediates the fixture records, from the model's own forward (hooks and wrappers)."""

    def __init__(self, model: SmoothSA):
        self.model = model
        self.values: dict[str, list[torch.Tensor]] = {}
        self.handles = []

    def _keep(self, name, value) -> None:  # a hook that returns None leaves the output as it is
        self.values.setdefault(name, []).append(value.detach().clone())

    def __enter__(self):
        pre, sa = self.model.preheater, self.model.slot_attention
        hooks = [
            (pre.memory_proj, lambda m, i, o: self._keep("preheat_memory", o)),
            (pre.mlp, lambda m, i, o: self._keep("preheat_ffn_out", o)),
            (sa.query_norm, lambda m, i, o: self._keep("sa_input_iter", i[0])),
            (sa.gru, lambda m, i, o: self._keep("sa_updates_iter", i[0]) or self._keep("gru_out", o)),
            (sa.mlp, lambda m, i, o: self._keep("sa_mlp_out", o)),
        ]
        self.handles = [module.register_forward_hook(hook) for module, hook in hooks]
        for attention, method, name in (
            (pre.cross_attn, "cross_attention", "ca"),
            (pre.self_attn, "self_attention", "sa"),
        ):
            original = getattr(attention, method)

            def wrapped(*args, _original=original, _name=f"preheat_{name}_out", **kwargs):
                out = _original(*args, **kwargs)
                self._keep(_name, out[0] if isinstance(out, tuple) else out)
                return out

            setattr(attention, method, wrapped)  # an instance attribute, shadowing the method until __exit__
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        del self.model.preheater.cross_attn.cross_attention, self.model.preheater.self_attn.self_attention

    def result(self, batch: int) -> dict[str, torch.Tensor]:
        v = self.values
        out = {k: v[k][0] for k in ("preheat_memory", "preheat_ffn_out", "preheat_ca_out", "preheat_sa_out")}
        out["sa_input_iter"] = torch.stack(v["sa_input_iter"])
        out["sa_updates_iter"] = torch.stack([u.unflatten(0, (batch, -1)) for u in v["sa_updates_iter"]])
        # slots after iteration t = GRU output + residual MLP, the sum the forward itself takes
        gru = [g.unflatten(0, (batch, -1)) for g in v["gru_out"]]
        out["slots_iter"] = torch.stack([g + m for g, m in zip(gru, v["sa_mlp_out"], strict=True)])
        return out


def _official_parameters(model) -> dict[str, torch.nn.Parameter]:
    """Official name ("m."-prefixed) -> our parameter, for every trainable parameter."""
    ours = dict(model.named_parameters())
    return {official: ours[name] for official, name in smoothsa_official_key_map(model).items() if name in ours}


class Pass(NamedTuple):
    name: str  # eval, train or train_nodetach
    out: SmoothSAOutput
    expected: dict  # the fixture's entries of this pass, without the prefix (train_nodetach: over train's)
    recorded: dict[str, torch.Tensor]  # our intermediates under the fixture's names (Recorder.result)
    losses: dict[str, torch.Tensor]  # loss_recon, loss_preheat, loss_preheat_weighted, loss_total
    grads: dict[str, torch.Tensor] | None  # official name -> gradient of loss_total (train passes)
    term_grads: dict[str, dict] | None  # "recon" / "preheat" -> official name -> gradient of that term, or None


@pytest.fixture(scope="module", params=PASSES)
def run(request, fixture, model) -> Pass:
    name = request.param
    source = "eval" if name == "eval" else "train"  # train_nodetach holds only losses: its forward is train's
    model.train(source == "train")
    model.zero_grad(set_to_none=True)
    with Recorder(model) as recorder:
        out = model(
            features=fixture["features"], detach_preheat=bool(fixture[f"{name}_detach_flag"]), **_draws(fixture, name)
        )
    recon = reconstruction_loss(out.recon, out.features)
    preheat = preheat_loss(out.qinit, out.slots)
    losses = dict(loss_recon=recon, loss_preheat=preheat, loss_preheat_weighted=PREHEAT_WEIGHT * preheat)
    losses["loss_total"] = recon + losses["loss_preheat_weighted"]
    grads = term_grads = None
    if source == "train":
        parameters = _official_parameters(model)
        term_grads = {}
        for term, loss in (("recon", recon), ("preheat", losses["loss_preheat_weighted"])):
            found = torch.autograd.grad(loss, list(parameters.values()), retain_graph=True, allow_unused=True)
            term_grads[term] = dict(zip(parameters, found, strict=True))
        losses["loss_total"].backward()
        grads = {official: p.grad.detach().clone() for official, p in parameters.items()}
    expected = {k.removeprefix(f"{source}_"): v for k, v in fixture.items() if k.startswith(f"{source}_")}
    if name == "train_nodetach":
        expected |= {k.removeprefix(f"{name}_"): v for k, v in fixture.items() if k.startswith(f"{name}_")}
    recorded = recorder.result(out.slots.shape[0])
    return Pass(name, out, expected, recorded, losses, grads, term_grads)


def _raster(x):  # (B, C, h, w) -> (B, N, C)
    return x.flatten(2).transpose(1, 2)


def _labelled(name: str):
    """assert_close's msg: the entry's name before torch's own report of the difference."""
    return lambda message: f"{name}: {message}"


def test_output_is_a_slot_output_plus_the_methods_own_fields():
    shared = [f.name for f in dataclasses.fields(SlotOutput)]
    fields = [f.name for f in dataclasses.fields(SmoothSAOutput)]
    assert issubclass(SmoothSAOutput, SlotOutput) and fields[: len(shared)] == shared
    assert {"qinit", "init_sample"} <= set(fields[len(shared) :])


def test_preheater(run):
    out, expected, recorded = run.out, run.expected, run.recorded
    torch.testing.assert_close(out.inputs, expected["encode"], **TOL)
    torch.testing.assert_close(out.init_sample, expected["preheat_sample"], **TOL)
    for key in ("preheat_memory", "preheat_ca_out", "preheat_sa_out", "preheat_ffn_out"):
        torch.testing.assert_close(recorded[key], expected[key], **TOL, msg=_labelled(key))
    torch.testing.assert_close(out.qinit, expected["qinit"], **TOL)
    torch.testing.assert_close(out.init_slots, expected["query"], **TOL)
    # qinit is the residual sum in the release's block order: sample + cross-attn + self-attn + MLP
    blocks = out.init_sample + recorded["preheat_ca_out"] + recorded["preheat_sa_out"] + recorded["preheat_ffn_out"]
    torch.testing.assert_close(blocks, out.qinit, atol=1e-5, rtol=1e-5)


def test_slot_attention_per_iteration(run):
    out, expected, recorded = run.out, run.expected, run.recorded
    for key in ("sa_input_iter", "sa_updates_iter", "slots_iter"):
        torch.testing.assert_close(recorded[key], expected[key], **TOL, msg=_labelled(key))
    torch.testing.assert_close(out.attn, expected["attenta_iter"].flatten(-2), **TOL)
    torch.testing.assert_close(out.attn[-1], expected["attenta"].flatten(-2), **TOL)
    torch.testing.assert_close(out.slots, expected["slots"], **TOL)
    torch.testing.assert_close(recorded["slots_iter"][-1], out.slots, atol=0, rtol=0)


def test_decoder(run, fixture):
    name, out, expected = run.name, run.out, run.expected
    query = out.decoder_query
    if name != "eval":  # the release records the query in permuted order
        perm = fixture["train_perm_idxs"]
        query = query.gather(1, perm[..., None].expand(-1, -1, query.shape[-1]))
    torch.testing.assert_close(out.decoder_memory, expected["decoder_memory"], **TOL)
    torch.testing.assert_close(query, expected["decoder_query"], **TOL)
    torch.testing.assert_close(out.recon, _raster(expected["recon"]), **TOL)
    torch.testing.assert_close(out.decoder_attn, expected["attentd"].flatten(-2), **TOL)


def test_segmentation_matches_except_at_ties(run):
    out, expected = run.out, run.expected
    assert_segmentation_matches_except_at_ties(out.decoder_attn, expected["segment_argmax"])


def test_losses(run):
    expected, losses = run.expected, run.losses
    for key, value in losses.items():
        torch.testing.assert_close(value, expected[key], **TOL, msg=_labelled(key))
    torch.testing.assert_close(losses["loss_recon"], expected["loss_recon_weighted"], **TOL)


def _assert_within(ours: torch.Tensor, ref: torch.Tensor, floor: float, name: str) -> None:
    """max |ours - ref| <= GRAD_REL * max |ref| + floor: a gradient's error relative to its own scale."""
    difference, bound = (ours - ref).abs().max().item(), GRAD_REL * ref.abs().max().item() + floor
    assert difference <= bound, f"{name}: max abs difference {difference:.3g} > {bound:.3g}"


def _sketches(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column sums of the gradient as float64 (shape[0], -1), as the fixture stores them."""
    g = grad.double().reshape(grad.shape[0], -1)
    return g.sum(1), g.sum(0)


@TRAIN_PASSES
def test_full_gradients(run, fixture):
    name, grads = run.name, run.grads
    reference = dict(fixture["train_grad"])
    if name == "train_nodetach":
        reference |= fixture["train_nodetach_grad"]  # the changed ones; every other gradient is train's
    assert reference, "the fixture holds no full gradient"
    for key, ref in reference.items():
        _assert_within(grads[key], ref, GRAD_ABS, key)


@TRAIN_PASSES
def test_gradient_sketches(run, fixture):
    name, grads = run.name, run.grads
    changed = set(fixture["train_nodetach_grad_changed"]) if name == "train_nodetach" else set()
    assert set(fixture["train_grad_rowsum"]) == set(grads)  # all 80 parameters, the sketch-only ones included
    for key in set(grads) - changed:
        rows, columns = _sketches(grads[key])
        _assert_within(rows, fixture["train_grad_rowsum"][key], SKETCH_ABS, f"{key} row sums")
        _assert_within(columns, fixture["train_grad_colsum"][key], SKETCH_ABS, f"{key} column sums")


@TRAIN_PASSES
def test_gradient_norms(run):
    expected, grads, term_grads = run.expected, run.grads, run.term_grads
    for key, ref in expected["grad_norm"].items():
        torch.testing.assert_close(grads[key].double().norm(), ref, rtol=NORM_RTOL, atol=NORM_ATOL, msg=_labelled(key))
    total = torch.stack([g.double().norm() for g in grads.values()]).norm()
    torch.testing.assert_close(total, expected["grad_total_norm"], rtol=NORM_RTOL, atol=0)
    for term in ("recon", "preheat"):
        unused = {key for key, g in term_grads[term].items() if g is None}
        assert unused == set(expected[f"grad_unused_{term}"]), term
        for key, ref in expected[f"grad_norm_{term}"].items():
            ours = torch.zeros((), dtype=torch.float64) if key in unused else term_grads[term][key].double().norm()
            torch.testing.assert_close(ours, ref, rtol=NORM_RTOL, atol=NORM_ATOL, msg=_labelled(f"{term} {key}"))


def test_detach_flag_changes_only_the_projection_gradient(fixture, model):
    """Flag on: the preheat loss does not reach the projection; off: it does, and nothing else changes."""
    model.train()
    parameters = _official_parameters(model)
    grads = {}
    for detach in (True, False):
        model.zero_grad(set_to_none=True)
        out = model(features=fixture["features"], detach_preheat=detach, **_draws(fixture, "train"))
        preheat = preheat_loss(out.qinit, out.slots)
        to_projection = torch.autograd.grad(
            preheat, list(model.project.parameters()), retain_graph=True, allow_unused=True
        )
        assert all(g is None for g in to_projection) == detach
        (reconstruction_loss(out.recon, out.features) + PREHEAT_WEIGHT * preheat).backward()
        grads[detach] = {key: p.grad.clone() for key, p in parameters.items()}
    changed = {key for key in parameters if not torch.equal(grads[True][key], grads[False][key])}
    assert changed == set(fixture["train_nodetach_grad_changed"])
    assert all(key.startswith("m.encode_project.") for key in changed)
    model.zero_grad(set_to_none=True)


def test_preheater_detach_flag_buffer_is_the_default(fixture, model):
    """detach_preheat=None reads the buffer: with it cleared the preheat loss reaches the projection."""
    model.train()
    assert bool(model.preheater.detach_flag)
    try:
        for flag in (True, False):
            model.preheater.detach_flag.fill_(flag)
            out = model(features=fixture["features"], **_draws(fixture, "train"))
            grads = torch.autograd.grad(
                preheat_loss(out.qinit, out.slots), list(model.project.parameters()), allow_unused=True
            )
            assert all(g is None for g in grads) == flag
    finally:
        model.preheater.detach_flag.fill_(True)  # the shared model's default, for the tests after this one


def test_slot_attention_does_not_train_the_preheater(fixture, model):
    """The reconstruction reaches the preheater only through the query noise's scale, and only in training."""
    for training in (False, True):
        model.train(training)
        draws = _draws(fixture, "train" if training else "eval")
        out = model(features=fixture["features"], detach_preheat=False, **draws)
        loss = reconstruction_loss(out.recon, out.features)
        names, params = zip(*model.preheater.named_parameters(), strict=True)
        reached = {
            n for n, g in zip(names, torch.autograd.grad(loss, params, allow_unused=True), strict=True) if g is not None
        }
        assert reached == ({"query_log_std"} if training else set())


def test_bi_level_truncation_back_propagates_only_the_last_iteration():
    """Gradients equal those of one iteration started from the (constant) slots after T - 1 iterations,
    with the last iteration's input gradient handed straight to the initial slots."""
    torch.manual_seed(0)
    b, n, c, d, k = 2, 16, 24, 12, 5
    truncated = SlotAttention(c, d, mlp_hidden_dim=32, num_iters=3, truncate="bi-level")
    full = SlotAttention(c, d, mlp_hidden_dim=32, num_iters=3)
    full.load_state_dict(truncated.state_dict())
    inputs, init, weight = torch.randn(b, n, c), torch.randn(b, k, d), torch.randn(b, k, d)

    def gradients(module, start, iters):
        start = start.clone().requires_grad_(True)
        slots, _ = module(inputs, start, num_iters=iters)
        return torch.autograd.grad((slots * weight).sum(), [start, *module.parameters()])

    with torch.no_grad():
        before_last, _ = full(inputs, init, num_iters=2)
    torch.testing.assert_close(truncated(inputs, init).slots, full(inputs, init).slots, atol=1e-6, rtol=0)
    expected = gradients(full, before_last, 1)  # one untruncated iteration from constant slots
    for ours, ref in zip(gradients(truncated, init, 3), expected, strict=True):
        torch.testing.assert_close(ours, ref)
    untruncated = gradients(full, init, 3)
    assert not torch.allclose(untruncated[0], expected[0])  # the test can tell the difference


def test_unknown_truncation_is_refused():
    with pytest.raises(ValueError, match="bi-level"):
        SlotAttention(8, 8, truncate="bilevel")


def test_preheater_shapes_and_noise():
    torch.manual_seed(0)
    b, n, c, d, k = 2, 16, 24, 12, 5
    preheater = Preheater(c, d, num_slots=k, num_heads=4, mlp_hidden_dim=32)
    inputs = torch.randn(b, n, c)
    out = preheater.eval()(inputs)
    assert out.sample.shape == out.qinit.shape == out.query.shape == (b, k, d)
    assert torch.equal(out.query, out.qinit) and not out.query.requires_grad
    assert preheater(inputs, num_slots=k + 2).qinit.shape == (b, k + 2, d)
    noise = torch.randn(b, k, d)
    pinned = preheater.train()(inputs, noise=noise, query_noise=torch.zeros(b, k, d))
    torch.testing.assert_close(pinned.sample, noise)  # zero mean, zero log_std at init: the sample is the noise
    torch.testing.assert_close(pinned.query, pinned.qinit.detach())
    with pytest.raises(ValueError, match="expected"):
        preheater(inputs, noise=torch.randn(b, k + 1, d))


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_random_draws_follow_the_release_order(fixture, model, mode):
    """Same seed, nothing injected: sample noise, query noise, permutation, keep and coin as the release draws."""
    model.train(mode == "train")
    torch.manual_seed(int(fixture[f"{mode}_rng_seed"]))
    with torch.no_grad():
        out = model(features=fixture["features"])
    torch.testing.assert_close(out.init_sample, fixture[f"{mode}_preheat_sample"], **TOL)
    torch.testing.assert_close(out.init_slots, fixture[f"{mode}_query"], **TOL)
    torch.testing.assert_close(out.recon, _raster(fixture[f"{mode}_recon"]), **TOL)


def test_init_weights_as_released():
    torch.manual_seed(0)
    model = _build(3, feature_dim=32)
    pre = model.preheater
    assert all(torch.count_nonzero(p) == 0 for p in (pre.mean, pre.log_std, pre.query_log_std))
    assert torch.count_nonzero(pre.memory_proj.bias) > 0  # the release does not reset the preheater
    assert (
        torch.count_nonzero(model.project.fc1.bias) == 0 and torch.count_nonzero(model.slot_attention.gru.bias_ih) == 0
    )
    layers = model.decoder.layers
    assert torch.equal(layers[1].mlp.fc1.weight, layers[3].mlp.fc1.weight)


def test_official_key_map_counts(fixture):
    with torch.device("meta"):  # names and shapes only
        model = build_smoothsa(
            build_backbone(VIT_S, image_size=256), num_slots=int(fixture["num_slots"]), **ARCHITECTURE
        )
    key_map = smoothsa_official_key_map(model)
    backbone = {k for k in key_map if k.startswith(OFFICIAL_BACKBONE_PREFIX)}
    assert (len(key_map), len(backbone), len(key_map) - len(backbone)) == (254, 173, 81)
    assert set(key_map) - backbone == set(fixture["weights"]) | {FLAG_KEY}
    ours = model.state_dict()
    assert all(tuple(ours[key_map[k]].shape) == tuple(v.shape) for k, v in fixture["weights"].items())
    assert set(ours) == set(key_map.values())


def test_official_state_dict_round_trips():
    torch.manual_seed(0)
    model = _build(3, feature_dim=32)
    key_map = smoothsa_official_key_map(model)
    assert len(key_map) == 81  # PatchStats has no weights: the 80 parameters and the detach flag
    ours = model.state_dict()
    state = {
        k: torch.randn_like(ours[v]) if v != "preheater.detach_flag" else torch.tensor(False)
        for k, v in key_map.items()
    }
    load_official_smoothsa_weights(model, state)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[v], state[k]) for k, v in key_map.items())


def test_dias_checkpoint_is_refused():
    with open(DIAS_MANIFEST, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    dias_state = {
        row["key"]: torch.empty(tuple(int(s) for s in row["shape"].strip("[]").split(",")), device="meta")
        for row in rows
    }
    with torch.device("meta"):
        model = build_smoothsa(build_backbone(VIT_S, image_size=256), num_slots=7, **ARCHITECTURE)
    with pytest.raises(WeightsMismatchError, match="missing") as error:
        load_official_smoothsa_weights(model, dias_state)
    for key in ("m.initializ.logstd2", "m.initializ.qproj_kv.weight", "m.initializ.qinit.linear1.weight"):
        assert key in str(error.value)
