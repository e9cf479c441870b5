"""Our DIAS against outputs and weights recorded from the official release (coco config, CPU float32).

The fixture, tests/fixtures/official_seed0.pt (its format: tests/fixtures/README.md), holds the release's
non-backbone weights, backbone features, the initial slots and the decoder's training mask; we inject those
and compare every output. DIAS_REFERENCE_FIXTURE=PATH runs these tests on another file in that format.
"""

import csv
import os
from pathlib import Path

import pytest
import torch
from equivalence import assert_segmentation_matches_except_at_ties

from dias.config import load_config
from dias.losses import reconstruction_loss
from dias.methods.dias.model import build_model
from dias.methods.dias.objective import distillation_loss, select_distillation_pair
from dias.methods.dias.official import dias_official_key_map, load_official_weights

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO / "tests" / "fixtures"
FIXTURE_ENV = "DIAS_REFERENCE_FIXTURE"
FIXTURE = Path(os.environ.get(FIXTURE_ENV, FIXTURE_DIR / "official_seed0.pt"))
MANIFEST = FIXTURE_DIR / "state_dict_manifest.tsv"
COCO_CONFIG = REPO / "configs" / "dias-coco.yaml"
SHIPPED_CONFIGS = sorted((REPO / "configs").glob("dias-*.yaml"))
TOL = dict(atol=1e-4, rtol=1e-4)
MODES = ("eval", "train")


@pytest.fixture(scope="module")
def fixture():
    assert FIXTURE.is_file(), f"reference fixture not found at {FIXTURE}"  # it ships with the repository
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def model(fixture):
    model = build_model(load_config(COCO_CONFIG))
    load_official_weights(model, fixture["weights"])
    return model


@pytest.fixture(scope="module", params=MODES)
def run(request, fixture, model):
    mode = request.param
    model.train(mode == "train")
    pinned = {}
    if mode == "train":
        pinned = dict(perm=fixture["train_perm_idxs"], visible=fixture["train_visible_mask"])
    with torch.no_grad():
        out = model(features=fixture["features"], init_slots=fixture[f"{mode}_query_init"], **pinned)
    expected = {k.removeprefix(f"{mode}_"): v for k, v in fixture.items() if k.startswith(f"{mode}_")}
    return mode, out, expected


def _raster(x):  # (B, C, h, w) -> (B, N, C)
    return x.flatten(2).transpose(1, 2)


def test_encoder_and_slot_attention(run):
    _, out, expected = run
    torch.testing.assert_close(out.inputs, expected["encode"], **TOL)
    torch.testing.assert_close(out.slots, expected["slots"], **TOL)
    torch.testing.assert_close(out.attn, expected["attenta"].flatten(-2), **TOL)


def test_decoder(run, fixture):
    mode, out, expected = run
    query = out.decoder_query
    if mode == "train":  # the release records the query in permuted order
        perm = fixture["train_perm_idxs"]
        query = query.gather(1, perm[..., None].expand(-1, -1, query.shape[-1]))
    torch.testing.assert_close(out.decoder_memory, expected["decoder_memory"], **TOL)
    torch.testing.assert_close(query, expected["decoder_query"], **TOL)
    torch.testing.assert_close(out.recon, _raster(expected["recon"]), **TOL)
    torch.testing.assert_close(out.decoder_attn, expected["attentd"].flatten(-2), **TOL)


def test_segmentation_matches_except_at_ties(run):
    _, out, expected = run
    assert_segmentation_matches_except_at_ties(out.decoder_attn, expected["segment_argmax"])


def test_losses(run):
    _, out, expected = run
    torch.testing.assert_close(reconstruction_loss(out.recon, out.features), expected["loss_recon"], **TOL)
    student, teacher = select_distillation_pair(out.attn)
    torch.testing.assert_close(distillation_loss(student, teacher, "prob"), expected["loss_distill"], **TOL)


def _manifest():
    with open(MANIFEST, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {row["key"]: tuple(int(s) for s in row["shape"].strip("[]").split(",")) for row in rows}


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.stem)
def test_official_key_map_covers_the_manifest(path):
    manifest = _manifest()
    with torch.device("meta"):  # names and shapes only: skip allocating and initialising the weights
        model = build_model(load_config(path))
    key_map = dias_official_key_map(model)
    ours = model.state_dict()
    assert set(key_map) == set(manifest)
    assert {k: tuple(ours[v].shape) for k, v in key_map.items()} == manifest
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable <= set(key_map.values())
    assert set(ours) == set(key_map.values())


@pytest.mark.parametrize("mode", MODES)
def test_random_draws_follow_the_release_order(fixture, model, mode):
    """Same seed, nothing injected: slot noise, permutation, keep and coin are drawn as the release does."""
    model.train(mode == "train")
    torch.manual_seed(int(fixture[f"{mode}_rng_seed"]))
    with torch.no_grad():
        out = model(features=fixture["features"])
    torch.testing.assert_close(out.init_slots, fixture[f"{mode}_query_init"], **TOL)
    torch.testing.assert_close(out.recon, _raster(fixture[f"{mode}_recon"]), **TOL)
