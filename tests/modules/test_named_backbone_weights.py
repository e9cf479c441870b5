"""The ViT-S/14 without registers: 224 px -> 16 x 16 x 384 tokens, weights named in the config from the store."""

import pytest
import timm
import torch

from dias.config import load_config
from dias.methods.common import backbone_from_config
from dias.schema import ConfigError
from dias.weights import sources, store

NAME = "dinov2-vits14"


@pytest.fixture(scope="module")
def stored_vit(tmp_path_factory):
    """Random ViT-S/14 weights in timm's 518-px layout, stored under NAME in a home of their own."""
    home = tmp_path_factory.mktemp("home")
    torch.manual_seed(0)
    vit = timm.create_model(sources.TIMM_NAME, pretrained=False, img_size=sources.TIMM_IMAGE_SIZE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(store.HOME_ENV, str(home))
        store.save(NAME, vit.state_dict(), {"source": {"kind": "test", "caveat": "random"}})
    return home, vit.state_dict()


def test_named_weights_load_from_the_store_and_give_a_16x16_grid_at_224_px(stored_vit, monkeypatch):
    home, state = stored_vit
    monkeypatch.setenv(store.HOME_ENV, str(home))
    monkeypatch.setattr(sources, "from_hub", lambda: pytest.fail("the hub was asked"))
    cfg = load_config(
        None,
        [
            "model.backbone.name=vit_small_patch14_dinov2",
            f"model.backbone.weights={NAME}",
            "data.image_size=224",
            "model.backbone.input_scale=1.0",
        ],
    )
    backbone = backbone_from_config(cfg)
    assert backbone.vit.num_prefix_tokens == 1 and backbone.grid_size(224) == (16, 16)
    assert torch.equal(backbone.vit.state_dict()["blocks.11.mlp.fc2.weight"], state["blocks.11.mlp.fc2.weight"])
    assert backbone.vit.pos_embed.shape == (1, 1 + 16 * 16, 384)  # resampled from 37 x 37
    tokens = backbone(torch.randint(0, 256, (1, 3, 224, 224), dtype=torch.uint8))
    assert tokens.shape == (1, 256, 384) and tokens.dtype == torch.float32


def test_named_weights_must_fit_the_backbone_named():
    with pytest.raises(ConfigError, match="set model.backbone.name=vit_small_patch14_dinov2"):
        load_config(None, [f"model.backbone.weights={NAME}"])
