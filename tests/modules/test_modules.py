"""Shape and equation tests for dias.modules, with tiny dims on CPU."""

import pytest
import timm
import torch
from safetensors.torch import save_file

from dias.io import WeightsMismatchError
from dias.methods.dias.model import build_model
from dias.modules.backbone import ColourCodes, PatchStats, ViTBackbone, build_backbone
from dias.modules.decoders import (
    MLPDecoder,
    RandomOrderTransformerDecoder,
    sample_visible,
    unpermute_visible,
)
from dias.modules.initializers import LearnedQueries, NormalShared
from dias.modules.layers import MLP, LinearNorm, MultiHeadAttention, PreNormMLP
from dias.modules.slot_attention import SlotAttention

B, N, C, D, K, T = 2, 16, 24, 12, 5, 3
VIT_S = "vit_small_patch14_reg4_dinov2"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_layer_shapes():
    x = torch.randn(B, N, C)
    assert MLP(C, 32, out_features=D)(x).shape == (B, N, D)
    assert PreNormMLP(C, C)(x).shape == (B, N, C)
    assert LinearNorm(C, D)(x).shape == (B, N, D)
    attention = MultiHeadAttention(C, num_heads=4)
    assert attention.self_attention(x).shape == (B, N, C)
    out, weights = attention.cross_attention(x, torch.randn(B, K, C))
    assert out.shape == (B, N, C) and weights.shape == (B, N, K)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, N))


def test_cross_attention_mask_gives_zero_weight():
    attention = MultiHeadAttention(C, num_heads=4)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[:, 1] = False
    mask[1] = False  # sample 1 has every slot masked: zeros, not NaN
    out, weights = attention.cross_attention(torch.randn(B, N, C), torch.randn(B, K, C), mask)
    assert torch.all(weights[:, :, 1] == 0) and torch.all(weights[1] == 0)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("num_memory", [3, 8])  # 3 x 4 heads < C: projections folded into the memory; 8: not
def test_cross_attention_equals_torch_multihead_attention(num_memory):
    attention = MultiHeadAttention(C, num_heads=4)
    torch.nn.init.normal_(attention.out_proj.weight)
    reference = torch.nn.MultiheadAttention(C, 4, bias=False, batch_first=True)
    reference.in_proj_weight.data.copy_(attention.in_proj.weight)
    reference.out_proj.weight.data.copy_(attention.out_proj.weight)
    x, memory = torch.randn(B, N, C), torch.randn(B, num_memory, C)
    mask = torch.ones(B, num_memory, dtype=torch.bool)
    mask[0, 1] = False
    out, weights = attention.cross_attention(x, memory, mask)
    expected, expected_weights = reference(x, memory, memory, key_padding_mask=~mask)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)


def test_normal_shared_samples_in_eval_and_any_num_slots():
    init = NormalShared(K, D).eval()
    a, b = init(B), init(B)
    assert a.shape == (B, K, D) and not torch.equal(a, b)  # noise in eval too, as released
    assert init(B, num_slots=K + 3).shape == (B, K + 3, D)
    assert init.mean.shape == init.log_std.shape == (1, 1, D)


def test_learned_queries():
    init = LearnedQueries(K, D)
    assert init(B).shape == (B, K, D) and torch.equal(init(B), init(B))
    with pytest.raises(ValueError, match="learned queries"):
        init(B, num_slots=K + 1)


@pytest.fixture
def slot_attention():
    return SlotAttention(C, D, mlp_hidden_dim=32, num_iters=T)


def test_slot_attention_shapes_and_softmax_axis(slot_attention):
    slots, attn = slot_attention(torch.randn(B, N, C), torch.randn(B, K, D))
    assert slots.shape == (B, K, D) and attn.shape == (T, B, K, N)
    torch.testing.assert_close(attn.sum(dim=2), torch.ones(T, B, N))  # slots compete for each token
    assert not torch.allclose(attn.sum(dim=3), torch.ones(T, B, K))
    assert slot_attention(torch.randn(B, N, C), torch.randn(B, K, D), num_iters=1).attn.shape[0] == 1


def test_slot_attention_masked_slots_get_nothing(slot_attention):
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[:, 0] = False
    mask[1, 2:] = False
    slots = torch.randn(B, K, D)
    slots[:, 0] += 100  # would win everywhere if it were not masked
    _, attn = slot_attention(torch.randn(B, N, C), slots, slot_mask=mask)
    assert torch.all(attn[:, ~mask] == 0)
    winners = attn.argmax(dim=2)  # (T, B, N)
    assert all(mask[b][winners[:, b]].all() for b in range(B))
    _, attn = slot_attention(torch.randn(B, N, C), slots, slot_mask=torch.zeros(B, K, dtype=torch.bool))
    assert torch.all(attn == 0)


def test_slot_attention_softmax_in_float32_under_autocast(slot_attention):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, attn = slot_attention(torch.randn(B, N, C), torch.randn(B, K, D))
    assert attn.dtype == torch.float32


def test_sample_visible_follows_the_release():
    n = 256
    perm, visible = sample_visible(64, n)
    assert perm.shape == visible.shape == (64, n)
    assert torch.equal(perm.sort(dim=1).values, torch.arange(n).expand(64, n))
    keep = visible.sum(dim=1)
    assert keep.max() <= n - 2 and (keep == int(n * 0.1) - 1).any()
    assert torch.equal(visible, torch.arange(n) < keep[:, None])  # a prefix in permuted order


@pytest.fixture
def decoder():
    return RandomOrderTransformerDecoder(C, D, num_tokens=N, num_layers=2, num_heads=4, mlp_ratio=2.0)


def test_transformer_decoder_shapes(decoder):
    features, slots = torch.randn(B, N, C), torch.randn(B, K, D)
    for mode in (True, False):
        out = decoder.train(mode)(features, slots)
        assert out.recon.shape == out.query.shape == (B, N, C)
        assert out.attn.shape == (B, K, N) and out.memory.shape == (B, K, C)
        torch.testing.assert_close(out.attn.sum(dim=1), torch.ones(B, N))
    assert isinstance(decoder.layers[0].self_attn_norm, torch.nn.Identity)
    assert decoder.layers[1].self_attn_norm.bias is None


def test_transformer_decoder_eval_is_deterministic_and_unmasked(decoder):
    features, slots = torch.randn(B, N, C), torch.randn(B, K, D)
    decoder.eval()
    a, b = decoder(features, slots), decoder(features, slots)
    assert torch.equal(a.recon, b.recon)
    expected = decoder.input_norm(decoder.feature_proj(features) + decoder.pos_embed)
    torch.testing.assert_close(a.query, expected)


def test_transformer_decoder_permuted_equals_raster_order(decoder):
    """Running the stack on permuted tokens and un-permuting gives what we compute in raster order."""
    features, slots = torch.randn(B, N, C), torch.randn(B, K, D)
    perm, visible = sample_visible(B, N)
    out = decoder.train()(features, slots, perm=perm, visible=visible)

    gather = perm[..., None].expand(-1, -1, C)
    tokens = decoder.feature_proj(features).gather(1, gather)
    tokens = torch.where(visible[..., None], tokens, decoder.mask_token)
    x = decoder.input_norm(tokens + decoder.pos_embed.expand(B, -1, -1).gather(1, gather))
    memory = decoder.slot_proj(slots)
    for layer in decoder.layers:
        x, weights = layer(x, memory)
    inverse = perm.argsort(dim=1)
    recon = x.gather(1, inverse[..., None].expand(-1, -1, C))
    attn = weights.gather(1, inverse[..., None].expand(-1, -1, K)).transpose(1, 2)
    torch.testing.assert_close(out.recon, recon, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.attn, attn, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(unpermute_visible(perm, visible).sum(1), visible.sum(1))


def test_transformer_decoder_masks_slots_and_tokens(decoder):
    features, slots = torch.randn(B, N, C), torch.randn(B, K, D)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[:, -1] = False
    out = decoder.eval()(features, slots, slot_mask=mask)
    assert torch.all(out.attn[:, -1] == 0)
    hidden = torch.zeros(B, N, dtype=torch.bool)  # nothing visible: the clue cannot matter
    a = decoder(features, slots, visible=hidden)
    b = decoder(torch.randn(B, N, C), slots, visible=hidden)
    torch.testing.assert_close(a.recon, b.recon)


def test_mlp_decoder():
    decoder = MLPDecoder(C, D, num_tokens=N, hidden_dim=32, num_hidden_layers=2)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[0, 0] = False
    out = decoder(None, torch.randn(B, K, D), slot_mask=mask)
    assert out.recon.shape == (B, N, C) and out.attn.shape == (B, K, N)
    torch.testing.assert_close(out.attn.sum(dim=1), torch.ones(B, N))
    assert torch.all(out.attn[0, 0] == 0)


@pytest.mark.parametrize(("name", "kind"), [("patch_stats", PatchStats), ("colour_codes", ColourCodes)])
def test_stand_in_backbones_are_frozen_parameter_free_and_fixed(name, kind):
    backbone = build_backbone(name, patch_size=8)
    images = torch.randint(0, 256, (B, 3, 32, 48), dtype=torch.uint8)
    tokens = backbone.train()(images)
    assert tokens.shape == (B, 4 * 6, backbone.feature_dim) and tokens.dtype == torch.float32
    assert backbone.grid_size(32) == (4, 4) and not backbone.training
    assert len(list(backbone.parameters())) == 0 and backbone.state_dict() == {}
    torch.testing.assert_close(kind(8)(images), tokens)  # fixed maps, the same every build
    torch.testing.assert_close(backbone(images[1:]), tokens[1:])  # an image's tokens do not depend on its batch


def test_patch_stats_describe_colour_and_where_edges_run():
    backbone = PatchStats(8)
    flat = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    flat[:, 0] = 200  # a red image: every patch the same
    tokens = backbone(flat)[0]
    torch.testing.assert_close(tokens, tokens[:1].expand_as(tokens))
    split = flat.clone()
    split[:, :, :, 4:8] = 0  # the right half of the first patch column goes black
    tokens = backbone(split)[0]
    assert not torch.allclose(tokens[0], tokens[1])  # patch (0, 0) now holds an edge, (0, 1) does not
    mirrored = flat.clone()
    mirrored[:, :, :, 0:4] = 0  # the same colours, the edge on the other side
    assert not torch.allclose(backbone(mirrored)[0, 0], tokens[0])
    with pytest.raises(ValueError, match="feature_dim"):
        PatchStats(8, feature_dim=8)


def uniform_image(*colours: tuple[int, int, int], patch: int = 8) -> torch.Tensor:
    """(1, 3, patch, patch * len(colours)) uint8: one patch-wide column per colour, left to right."""
    columns = [torch.tensor(c, dtype=torch.uint8).view(3, 1, 1).expand(3, patch, patch) for c in colours]
    return torch.cat(columns, dim=2)[None]


def position_channels(backbone: ColourCodes, h: int, w: int) -> torch.Tensor:
    """(h * w, C): what ColourCodes adds to the codes of an h x w token grid."""
    return backbone.position_weight * backbone.position(h, w)


def test_colour_codes_say_which_hue_not_how_bright():
    backbone = ColourCodes(8, shuffle=False)
    tokens = backbone(uniform_image((200, 40, 40), (100, 20, 20), (40, 40, 200))) - position_channels(backbone, 1, 3)
    red, dark_red, blue = tokens[0]
    torch.testing.assert_close(dark_red, red)  # shading leaves the code
    cosine = torch.nn.functional.cosine_similarity(red, blue, dim=0)
    assert cosine < 0.05 and red.norm() > 1  # two hues: nearly orthogonal codes
    black = backbone(uniform_image((0, 0, 0)))[0, 0] - position_channels(backbone, 1, 1)[0]
    torch.testing.assert_close(black, torch.zeros_like(black))  # no colour direction, no code
    with pytest.raises(ValueError, match="feature_dim"):
        ColourCodes(8, feature_dim=8)


def test_colour_codes_permute_channels_per_image():
    plain, shuffled = ColourCodes(8, shuffle=False), ColourCodes(8)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    orders = shuffled.channel_orders(images)
    assert torch.equal(orders.sort(dim=1).values, torch.arange(64).expand(4, 64))  # permutations
    assert len({tuple(order.tolist()) for order in orders}) == 4  # one of its own per image
    position = position_channels(plain, 2, 2)
    codes, permuted = plain(images) - position, shuffled(images) - position
    torch.testing.assert_close(permuted, codes.gather(2, orders[:, None].expand_as(codes)))
    assert not torch.allclose(permuted, codes)


@pytest.fixture(scope="module")
def vit():
    return ViTBackbone(VIT_S, weights=None, image_size=256)


def test_vit_backbone_tokens(vit):
    assert (vit.feature_dim, vit.patch_size, vit.grid_size(256)) == (384, 14, (16, 16))
    assert isinstance(vit.vit.norm, torch.nn.Identity)
    assert all(not p.requires_grad for p in vit.parameters())
    images = torch.randint(0, 256, (1, 3, 256, 256), dtype=torch.uint8)
    vit.train()
    assert not vit.training and not any(m.training for m in vit.modules())
    tokens = vit(images)
    assert tokens.shape == (1, 256, 384) and not tokens.requires_grad
    x = (images.float() - vit.pixel_mean) / vit.pixel_std
    x = torch.nn.functional.interpolate(x, size=224, mode="bicubic", align_corners=False)
    expected = vit.vit.blocks(vit.vit._pos_embed(vit.vit.patch_embed(x)))[:, 5:]  # raw last block, no norm
    torch.testing.assert_close(tokens, expected)


def test_vit_backbone_loads_timm_full_resolution_weights(vit, tmp_path):
    source = timm.create_model(VIT_S, pretrained=False, img_size=518)  # 37x37 pos-embed, final norm, as on the hub
    path = tmp_path / "dinov2.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    vit.load_weights(path)
    torch.testing.assert_close(vit.vit.blocks[3].mlp.fc1.weight, source.blocks[3].mlp.fc1.weight)
    assert vit.vit.pos_embed.shape == (1, 256, 384)


def test_vit_backbone_loads_official_backbone_keys(vit, tmp_path):
    state = {f"m.encode_backbone.1.{k}": v + 1 for k, v in vit.vit.state_dict().items()}
    state["m.aggregat.norm2.weight"] = torch.ones(256)  # the rest of a release checkpoint is ignored
    path = tmp_path / "release.pth"
    torch.save(state, path)
    before = vit.vit.cls_token.clone()
    vit.load_weights(path)
    torch.testing.assert_close(vit.vit.cls_token, before + 1)


def test_vit_backbone_weight_errors(vit, tmp_path):
    with pytest.raises(FileNotFoundError, match="pass model.backbone.weights=PATH"):
        vit.load_weights(tmp_path / "absent.pth")
    state = {k: v for k, v in vit.vit.state_dict().items() if k != "cls_token"}
    state["extra.weight"] = torch.zeros(1)
    state["reg_token"] = torch.zeros(1, 3, 384)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsMismatchError, match="cls_token.*extra.weight.*reg_token.*model.backbone.weights"):
        vit.load_weights(tmp_path / "bad.pth")


def test_unreadable_backbone_weights_name_the_file_and_the_option(vit, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"<html>404 Not Found</html>")  # what a failed download leaves
    good = tmp_path / "good.safetensors"
    save_file({k: v.contiguous() for k, v in vit.vit.state_dict().items()}, str(good))
    truncated = tmp_path / "truncated.safetensors"  # an interrupted download
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path, kind in ((garbage, "torch .pth/.pt file"), (truncated, ".safetensors file")):
        with pytest.raises(WeightsMismatchError, match=f"cannot read {path} as a {kind} .*model.backbone.weights=PATH"):
            vit.load_weights(path)
    vit.load_weights(good)


def test_vit_base_backbone():
    backbone = build_backbone("vit_base_patch14_reg4_dinov2", image_size=256)
    assert (backbone.feature_dim, backbone.grid_size(256)) == (768, (16, 16))
    assert backbone.vit.pos_embed.shape == (1, 256, 768)


def test_normal_shared_noise_equals_the_draw_and_keeps_the_gradient():
    init = NormalShared(K, D)
    torch.manual_seed(1)
    drawn = init(B)
    torch.manual_seed(1)
    noise = torch.randn(B, K, D)
    given = init(B, noise=noise)
    assert torch.equal(given, drawn)
    given.sum().backward()  # d/d mean = B * K; d/d log_std = sum over (b, k) of noise * exp(log_std)
    torch.testing.assert_close(init.mean.grad, torch.full((1, 1, D), float(B * K)))
    torch.testing.assert_close(init.log_std.grad, (noise * init.log_std.exp()).sum((0, 1), keepdim=True).detach())
    with pytest.raises(ValueError, match="slot noise has shape"):
        init(B, noise=torch.randn(B, K + 1, D))
    with pytest.raises(ValueError, match="draw no noise"):
        LearnedQueries(K, D)(B, noise=noise)


def test_dias_init_noise_trains_the_initializer_where_init_slots_does_not(small_demo_config):
    model = build_model(small_demo_config())
    images = torch.randint(0, 256, (B, 3, 64, 64), dtype=torch.uint8)
    initializer = model.initializer
    noise = torch.randn(B, initializer.num_slots, initializer.mean.shape[-1])  # (B, K, D)
    out = model(images=images, init_noise=noise)
    torch.testing.assert_close(out.init_slots, initializer.mean + noise * initializer.log_std.exp())
    out.recon.square().mean().backward()
    assert initializer.mean.grad.abs().sum() > 0 and initializer.log_std.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model(images=images, init_slots=out.init_slots.detach()).recon.square().mean().backward()
    assert initializer.mean.grad is None and initializer.log_std.grad is None  # a constant: no gradient
    with pytest.raises(ValueError, match="at most one of init_slots"):
        model(images=images, init_slots=out.init_slots, init_noise=noise)
