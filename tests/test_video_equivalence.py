"""Our SmoothSA-video and RandSF.Q models against forward passes recorded from the official releases (CPU float32).

A video fixture (format "video-fixture-v1"; tests/fixtures/README.md) holds one official video model's weights,
the backbone features of a clip batch (and the first-frame boxes of conditional configs), every random draw of
an eval and a train pass in call order, and what the model computed. We build the model the file names, load
its weights, replay its draws and compare every output. Everything (which release, K, the transitioner's
window, conditioning) is read from the file: DIAS_VIDEO_FIXTURE=PATH runs these tests on another recording
in the same format (another config or seed). The transitioner's dropout is 0 in the recordings.

A SmoothSA-video recording also holds a train pass with the preheater's detach flag off (`train_nodetach`, the
release's value from step total_step / 10): the same features and draws as `train`, so the same forward, and
its losses, gradient norms and the full gradients the flag changes. The tests compare it whenever the file
holds it and skip it otherwise (RandSF.Q has no preheater).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from equivalence import assert_segmentation_matches_except_at_ties
from torch import nn

from dias.losses import reconstruction_loss
from dias.methods.randsfq.config import RandSFQConfig
from dias.methods.randsfq.model import build_randsfq
from dias.methods.randsfq.objective import slot_contrast_loss
from dias.methods.randsfq.official import load_official_randsfq_weights, randsfq_official_key_map
from dias.methods.smoothsa_video.config import SmoothSAVideoConfig
from dias.methods.smoothsa_video.model import build_smoothsa_video
from dias.methods.smoothsa_video.objective import video_preheat_loss
from dias.methods.smoothsa_video.official import (
    load_official_smoothsa_video_weights,
    smoothsa_video_official_key_map,
)
from dias.methods.video import VideoSlotOutput
from dias.methods.video_config import VideoMethodConfig
from dias.modules.backbone import PatchStats
from dias.schema import PreheatedInitializerConfig, SlotAttentionConfig, TransformerDecoderConfig

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
FIXTURE_ENV = "DIAS_VIDEO_FIXTURE"
SHIPPED = sorted(FIXTURE_DIR.glob("video_model_*.pt"))
FIXTURES = [Path(os.environ[FIXTURE_ENV])] if os.environ.get(FIXTURE_ENV) else SHIPPED
TOL = dict(atol=1e-4, rtol=1e-4)
SUM_TOL = dict(atol=2e-3, rtol=1e-4)  # sums over 256 or 384 values of order 1
GRAD_REL, GRAD_ABS = 1e-3, 1e-6  # full gradients: max |ours - ref| <= GRAD_REL * max |ref| + GRAD_ABS
SKETCH_ABS = 1e-5  # row and column sums: the same with this absolute floor
NORM_RTOL, NORM_ATOL = 1e-3, 1e-9
# The releases' video models share the image models' architecture (config-smoothsa/smoothsav_*.py,
# config-randsfq/randsfq_*.py); K, the window and conditioning come from the fixture.
IMAGE_SIZE, SLOT_DIM = 256, 256
SLOT_ATTENTION = dict(num_iters=3, mlp_dim=1024)  # and the release's truncation
DECODER = TransformerDecoderConfig(
    num_layers=4, num_heads=4, mlp_ratio=4.0, visible_short_prob=0.5, visible_short_fraction=0.1
)
TRANSIT_DROPOUT = 0.0  # the recordings' (the release trains with 0.5; dropout masks cannot be recorded)


class Release(NamedTuple):
    build: Callable[..., nn.Module]
    load: Callable[[nn.Module, dict], None]  # the official weights
    key_map: Callable[[nn.Module], dict[str, str]]  # official name -> ours
    method: type[VideoMethodConfig]  # its model.method section
    truncate: str | None  # its slot attention's truncation
    own: dict  # the builder's keywords of its own


RELEASES = {  # the fixture's `repo`
    "SmoothSA": Release(
        build_smoothsa_video,
        load_official_smoothsa_video_weights,
        smoothsa_video_official_key_map,
        SmoothSAVideoConfig,
        "bi-level",
        {"preheater": PreheatedInitializerConfig(num_heads=4, ffn_dim=1024)},
    ),
    "RandSF.Q": Release(
        build_randsfq, load_official_randsfq_weights, randsfq_official_key_map, RandSFQConfig, None, {}
    ),
}
PASSES = ("eval", "train", "train_nodetach")
TRAIN_PASSES = pytest.mark.parametrize("run", PASSES[1:], indirect=True)  # the passes with a backward


@pytest.fixture(scope="module", params=FIXTURES, ids=lambda p: p.stem)
def fixture(request):
    path = request.param
    assert path.is_file(), f"video fixture not found at {path}"
    data = torch.load(path, weights_only=True)
    assert data["format"] == "video-fixture-v1", data["format"]
    return data


def _release(fixture):
    return RELEASES[fixture["repo"]]


@pytest.fixture(scope="module")
def model(fixture):
    release = _release(fixture)
    # Features are injected, so any backbone with a 16x16 grid at 256 px will do: PatchStats has no weights.
    backbone = PatchStats(patch_size=16, feature_dim=fixture["train_features"].shape[-1])
    model = release.build(
        backbone,
        image_size=IMAGE_SIZE,
        num_slots=int(fixture["num_slots"]),
        slot_dim=SLOT_DIM,
        window=int(fixture["transit_dt"]),
        slot_attention=SlotAttentionConfig(**SLOT_ATTENTION, truncate=release.truncate),
        decoder=DECODER,
        method=release.method(conditional=bool(fixture["conditional"]), transit_dropout=TRANSIT_DROPOUT),
        **release.own,
    )
    release.load(model, {k: v.float() for k, v in fixture["weights"].items()})
    return model


def replay(fixture, name: str, num_tokens: int) -> dict:
    """The recorded draws of a pass, in the release's call order, as our forward's keywords.

    randn_like: the initializer's noise, then (SmoothSA-video, training) the preheater's query noise;
    randint pairs: the transitioner's slot and feature indices, per frame that draws; vmap_randperm,
    randint, rand: the decoder's token order, long-case visible count and short/long coin.
    """
    names, draws = list(fixture[f"{name}_draw_names"]), list(fixture[f"{name}_draws"])
    keywords: dict = {}
    noise = [d for n, d in zip(names, draws, strict=True) if n == "randn_like"]
    if noise and not (fixture["conditional"] and fixture["repo"] == "RandSF.Q"):
        keywords["init_noise"] = noise.pop(0)
    if noise:
        keywords["query_noise"] = noise.pop(0)
    assert not noise, f"{name}: unexpected normal draws"
    end = names.index("vmap_randperm") if "vmap_randperm" in names else len(names)
    pair_draws = [d for n, d in zip(names[:end], draws[:end], strict=True) if n == "randint"]
    keywords["pairs"] = list(zip(pair_draws[::2], pair_draws[1::2], strict=True))
    if end < len(names):
        assert names[end:] == ["vmap_randperm", "randint", "rand"], names[end:]
        perm, keep_long, coin = draws[end:]
        # sample_visible's rule (dias.modules.decoders), with the recorded draws in place of its own
        keep_short = int(num_tokens * DECODER.visible_short_fraction) - 1
        keep = torch.where(coin < 1 - DECODER.visible_short_prob, keep_long, keep_short)
        keywords |= dict(perm=perm, visible=torch.arange(num_tokens) < keep)
    return keywords


class Pass(NamedTuple):
    name: str
    out: VideoSlotOutput
    expected: dict  # the fixture's entries of this pass, without the prefix
    losses: dict[str, torch.Tensor]  # loss_recon, loss_ssc, (loss_preheat,) loss_total
    grads: dict[str, torch.Tensor] | None  # official name -> gradient of loss_total (train)
    term_grads: dict[str, dict] | None  # term -> official name -> gradient of that weighted term, or None


def _losses(fixture, out, expected) -> dict[str, torch.Tensor]:
    """The release's loss terms and weights (read from the fixture): recon + 0.5 ssc (+ 100 preheat)."""
    terms = {"recon": reconstruction_loss(out.recon, out.features), "ssc": slot_contrast_loss(out.slots)}
    if hasattr(out, "qinit"):
        terms["preheat"] = video_preheat_loss(out.qinit, out.slots)
    losses = {f"loss_{t}": v for t, v in terms.items()}
    losses |= {f"loss_{t}_weighted": float(expected[f"loss_{t}_weight"]) * v for t, v in terms.items()}
    losses["loss_total"] = sum(losses[f"loss_{t}_weighted"] for t in terms)
    return losses


@pytest.fixture(scope="module", params=PASSES)
def run(request, fixture, model) -> Pass:
    name = request.param
    if f"{name}_loss_total" not in fixture:
        pytest.skip(f"the recording holds no {name} pass")
    source = "eval" if name == "eval" else "train"  # train_nodetach replays train's inputs and draws
    expected = {k.removeprefix(f"{source}_"): v for k, v in fixture.items() if k.startswith(f"{source}_")}
    if name == "train_nodetach":  # its losses, gradients and flag, over train's forward values
        expected |= {k.removeprefix(f"{name}_"): v for k, v in fixture.items() if k.startswith(f"{name}_")}
    model.train(source == "train")
    model.zero_grad(set_to_none=True)
    features = expected["features"].float()
    options = replay(fixture, source, features.shape[2])
    if "bbox" in expected:
        options["boxes"] = expected["bbox"]
    if hasattr(model, "preheater"):
        options["detach_preheat"] = bool(expected["detach_flag"])
    out = model(features=features, **options)
    losses = _losses(fixture, out, expected)
    grads = term_grads = None
    if source == "train":
        ours = dict(model.named_parameters())
        parameters = {official: ours[k] for official, k in _release(fixture).key_map(model).items() if k in ours}
        term_grads = {}
        for term in [k.removeprefix("loss_").removesuffix("_weighted") for k in losses if k.endswith("_weighted")]:
            found = torch.autograd.grad(
                losses[f"loss_{term}_weighted"], list(parameters.values()), retain_graph=True, allow_unused=True
            )
            term_grads[term] = dict(zip(parameters, found, strict=True))
        losses["loss_total"].backward()
        grads = {official: p.grad.detach().clone() for official, p in parameters.items()}
    return Pass(name, out, expected, losses, grads, term_grads)


def _labelled(name: str):
    return lambda message: f"{name}: {message}"


def _tokens_last(x: torch.Tensor) -> torch.Tensor:  # (B, T, K, h, w) -> (B, T, K, N)
    return x.flatten(-2)


def test_encoding(run):
    out, expected = run.out, run.expected
    torch.testing.assert_close(out.features, expected["features"].float(), atol=0, rtol=0)
    torch.testing.assert_close(out.inputs.sum(-1), expected["encode_sum_channels"], **SUM_TOL)
    torch.testing.assert_close(out.inputs.sum(-2), expected["encode_sum_tokens"], **SUM_TOL)


def test_queries_and_transitioner(run):
    out, expected = run.out, run.expected
    if "out_qinit" in expected:
        torch.testing.assert_close(out.qinit, expected["out_qinit"], **TOL)
    torch.testing.assert_close(out.queries, expected["query_per_frame"], **TOL)
    torch.testing.assert_close(out.queries[:, 1:], expected["transit_out"], **TOL)


def test_slots_and_attention(run):
    out, expected = run.out, run.expected
    attn = expected.get("out_attenta", expected.get("out_attent"))
    torch.testing.assert_close(out.slots, expected["out_slotz"], **TOL)
    torch.testing.assert_close(out.attn, _tokens_last(attn), **TOL)


def test_decoder(run):
    out, expected = run.out, run.expected
    decoder_attn = expected.get("out_attentd", expected.get("out_attent2"))
    torch.testing.assert_close(out.decoder_attn, _tokens_last(decoder_attn), **TOL)
    if "out_recon" in expected:  # (B, T, C, h, w) in full
        torch.testing.assert_close(out.recon, expected["out_recon"].flatten(-2).transpose(-1, -2), **TOL)
    else:  # as sums
        torch.testing.assert_close(out.recon.sum(-1), expected["out_recon_sum_channels"], **SUM_TOL)
        torch.testing.assert_close(out.recon.sum(-2), expected["out_recon_sum_tokens"], **SUM_TOL)


def test_segmentation_matches_except_at_ties(run):
    out, expected = run.out, run.expected
    assert_segmentation_matches_except_at_ties(out.decoder_attn.flatten(0, 1), expected["segment_argmax"].flatten(0, 1))


def test_losses(run):
    for key, value in run.losses.items():
        torch.testing.assert_close(value, run.expected[key], **TOL, msg=_labelled(key))


def _assert_within(ours: torch.Tensor, ref: torch.Tensor, floor: float, name: str) -> None:
    """max |ours - ref| <= GRAD_REL * max |ref| + floor: a gradient's error relative to its own scale."""
    difference, bound = (ours.double() - ref.double()).abs().max().item(), GRAD_REL * ref.abs().max().item() + floor
    assert difference <= bound, f"{name}: max abs difference {difference:.3g} > {bound:.3g}"


@TRAIN_PASSES
def test_full_gradients(run, fixture):
    reference = dict(fixture["train_grad"])
    if run.name == "train_nodetach":
        reference |= fixture["train_nodetach_grad"]  # the ones the flag changes; every other gradient is train's
    assert reference, "the fixture holds no full gradient"
    for key, ref in reference.items():
        _assert_within(run.grads[key], ref, GRAD_ABS, key)


@pytest.mark.parametrize("run", ["train"], indirect=True)  # train_nodetach records no sketches
def test_gradient_sketches(run, fixture):
    assert set(fixture["train_grad_rowsum"]) == set(run.grads)  # every parameter has a sketch
    for key, grad in run.grads.items():
        g = grad.double().reshape(grad.shape[0], -1)
        for dim, sketch in ((1, "rowsum"), (0, "colsum")):
            ours, ref = g.sum(dim), fixture[f"train_grad_{sketch}"][key].double()
            # a sum's rounding error scales with the sum of its terms' magnitudes, not with the sum: the summation
            # order (torch's thread count) moves a sum that cancels by more than GRAD_REL of its own size
            difference = (ours - ref).abs().max().item()
            bound = GRAD_REL * max(ref.abs().max().item(), g.abs().sum(dim).max().item()) + SKETCH_ABS
            assert difference <= bound, f"{key} {sketch}: max abs difference {difference:.3g} > {bound:.3g}"


@TRAIN_PASSES
def test_gradient_norms(run):
    expected, grads, term_grads = run.expected, run.grads, run.term_grads
    for key, ref in expected["grad_norm"].items():
        torch.testing.assert_close(grads[key].double().norm(), ref, rtol=NORM_RTOL, atol=NORM_ATOL, msg=_labelled(key))
    total = torch.stack([g.double().norm() for g in grads.values()]).norm()
    torch.testing.assert_close(total, expected["grad_total_norm"], rtol=NORM_RTOL, atol=0)
    for term, found in term_grads.items():
        unused = {key for key, g in found.items() if g is None}
        assert unused == set(expected[f"grad_unused_{term}"]), term
        for key, ref in expected[f"grad_norm_{term}"].items():
            ours = torch.zeros((), dtype=torch.float64) if key in unused else found[key].double().norm()
            torch.testing.assert_close(ours, ref, rtol=NORM_RTOL, atol=NORM_ATOL, msg=_labelled(f"{term} {key}"))


def test_every_release_key_is_ours(fixture, model):
    ours = model.state_dict()
    keys = _release(fixture).key_map(model)
    assert set(fixture["weights"]) <= set(keys)
    assert all(tuple(ours[keys[k]].shape) == tuple(v.shape) for k, v in fixture["weights"].items())
