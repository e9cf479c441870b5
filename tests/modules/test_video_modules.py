"""The video parts: the transitioner, the box initializers, SlotContrast, and the recurrence over frames."""

import pytest
import torch

from dias.methods.randsfq.config import RandSFQConfig
from dias.methods.randsfq.model import build_randsfq
from dias.methods.randsfq.objective import slot_contrast_loss
from dias.methods.smoothsa_video.config import SmoothSAVideoConfig
from dias.methods.smoothsa_video.model import build_smoothsa_video
from dias.methods.smoothsa_video.objective import video_preheat_loss
from dias.methods.video import attend_frames
from dias.modules.backbone import PatchStats
from dias.modules.initializers import BoxMLP
from dias.modules.preheater import Preheater
from dias.modules.slot_attention import SlotAttention
from dias.modules.transitioner import Transitioner
from dias.schema import PreheatedInitializerConfig, SlotAttentionConfig, TransformerDecoderConfig

B, N, C, D, K = 2, 16, 24, 16, 3
TINY_DECODER = TransformerDecoderConfig(
    num_layers=2, num_heads=4, mlp_ratio=2.0, visible_short_prob=0.5, visible_short_fraction=0.5
)


def _transitioner(window=4):
    torch.manual_seed(0)
    return Transitioner(C, D, window=window, num_heads=4, mlp_ratio=2.0, dropout=0.0)


def test_transitioner_shapes_and_window():
    transit = _transitioner(window=4).eval()
    slots, inputs = torch.randn(B, 5, K, D), torch.randn(B, 6, N, C)
    query = transit(slots, inputs)
    assert query.shape == (B, K, D)
    # only the last window - 1 slot states and window frames are read
    older = slots.clone()
    older[:, :2] = 7.0
    torch.testing.assert_close(transit(older, inputs), query)
    with pytest.raises(ValueError, match="frames"):
        transit(slots[:, :2], inputs[:, :2])


def test_transitioner_eval_reads_the_last_slots_and_the_current_frame():
    transit = _transitioner().eval()
    slots, inputs = torch.randn(B, 3, K, D), torch.randn(B, 4, N, C)
    query = transit(slots, inputs, pair=(torch.zeros(B, dtype=torch.long), torch.ones(B, dtype=torch.long)))
    changed = slots.clone()
    changed[:, :-1] += 1.0  # everything but the last slots
    torch.testing.assert_close(transit(changed, inputs), query)
    changed_inputs = inputs.clone()
    changed_inputs[:, -1] += 1.0
    assert not torch.allclose(transit(slots, changed_inputs), query)


def test_transitioner_random_pairs_index_the_windows():
    transit = _transitioner().train()
    slots, inputs = torch.randn(B, 3, K, D), torch.randn(B, 4, N, C)
    assert transit.draws_pair(3) and not transit.draws_pair(1)
    ts, te = torch.tensor([0, 2]), torch.tensor([1, 3])
    query = transit(slots, inputs, pair=(ts, te))
    # video 0 reads slot state 0 (gap 3) and frame 1 (gap 2) of the windows
    manual = transit.layer(
        slots[0:1, 0] + transit.time_embed(torch.tensor([3]))[:, None],
        transit.input_proj(inputs[0:1, 1]) + transit.time_embed(torch.tensor([2]))[:, None],
    )
    torch.testing.assert_close(query[0:1], manual)
    assert not torch.allclose(query, transit(slots, inputs, pair=(ts, te.flip(0))))
    torch.manual_seed(1)
    first = transit(slots, inputs)
    torch.manual_seed(1)
    torch.testing.assert_close(transit(slots, inputs), first)  # its own draws follow the seed


def test_transitioner_inputs_are_detached():
    transit = _transitioner().train()
    slots = torch.randn(B, 3, K, D, requires_grad=True)
    inputs = torch.randn(B, 4, N, C, requires_grad=True)
    query = transit(slots, inputs, pair=(torch.tensor([0, 1]), torch.tensor([2, 3])))
    grads = torch.autograd.grad(query.sum(), [slots, inputs, *transit.parameters()], allow_unused=True)
    assert grads[0] is None and grads[1] is None
    assert all(g is not None for g in grads[2:])


def test_box_initializers():
    boxes = torch.rand(B, K, 4)
    assert BoxMLP(4, D)(boxes).shape == (B, K, D)
    normed = BoxMLP(4, D, post_norm=True)(boxes)
    torch.testing.assert_close(normed.mean(-1), torch.zeros(B, K), atol=1e-5, rtol=0)
    preheater = Preheater(C, D, num_slots=K + 5, num_heads=4, mlp_hidden_dim=32, box_features=4).eval()
    out = preheater(torch.randn(B, N, C), boxes=boxes)
    assert out.sample.shape == out.qinit.shape == out.query.shape == (B, K, D)  # K from the boxes
    with pytest.raises(ValueError, match="boxes"):
        preheater(torch.randn(B, N, C))
    assert not hasattr(preheater, "mean")


def _slot_contrast_by_loops(slots, tau=0.1):
    """For each frame pair and each slot n of the later frame: softmax over the earlier frame's slots m."""
    x = torch.nn.functional.normalize(slots.double(), dim=-1)
    b, t, k, _ = x.shape
    pooled = [x[:, f].transpose(0, 1).reshape(k * b, -1) for f in range(t)]  # (slot, video) order
    losses = []
    for f in range(t - 1):
        for n in range(k * b):
            logits = torch.stack([pooled[f][m] @ pooled[f + 1][n] for m in range(k * b)]) / tau
            losses.append(-(logits.log_softmax(0)[n]))
    return torch.stack(losses).mean()


def test_slot_contrast_softmax_runs_over_the_earlier_frame():
    torch.manual_seed(0)
    slots = torch.randn(B, 4, K, D)
    torch.testing.assert_close(slot_contrast_loss(slots).double(), _slot_contrast_by_loops(slots), atol=1e-5, rtol=0)
    # the transposed softmax (over the later frame) is another number: the test can tell the axes apart
    x = torch.nn.functional.normalize(slots, dim=-1).permute(1, 2, 0, 3).reshape(4, K * B, D)
    transposed = -torch.einsum("tmd,tnd->tmn", x[:-1], x[1:]).div(0.1).log_softmax(2).diagonal(dim1=1, dim2=2).mean()
    assert not torch.allclose(transposed, slot_contrast_loss(slots))
    assert slot_contrast_loss(slots[:, :1].expand(-1, 4, -1, -1).contiguous()) < slot_contrast_loss(slots)


def test_video_preheat_loss_reads_frame_zero_and_detaches_it():
    qinit = torch.randn(B, K, D, requires_grad=True)
    slots = torch.randn(B, 3, K, D, requires_grad=True)
    loss = video_preheat_loss(qinit, slots)
    torch.testing.assert_close(loss, ((qinit - slots[:, 0]) ** 2).mean())
    loss.backward()
    assert slots.grad is None and qinit.grad is not None


def test_no_gradient_flows_back_through_time():
    torch.manual_seed(0)
    sa = SlotAttention(C, D, mlp_hidden_dim=32, num_iters=3)
    transit = _transitioner().train()
    first = torch.randn(B, K, D, requires_grad=True)
    frames = attend_frames(sa, transit, torch.randn(B, 4, N, C), first)
    assert frames.slots.shape == frames.queries.shape == (B, 4, K, D) and frames.attn.shape == (B, 4, K, N)
    assert torch.equal(frames.queries[:, 0], first)
    (later,) = torch.autograd.grad(frames.slots[:, 1:].sum(), [first], retain_graph=True, allow_unused=True)
    assert later is None or not later.any()  # later frames start from the transitioner, which reads detached slots
    (own,) = torch.autograd.grad(frames.slots[:, 0].sum(), [first])
    assert own.abs().sum() > 0


def _tiny_video_model(name: str, conditional: bool):
    """A tiny model of the video method `name` (smoothsa_video or randsfq), its transitioner without dropout."""
    backbone = PatchStats(patch_size=16, feature_dim=C)
    common = dict(backbone=backbone, image_size=64, num_slots=K, slot_dim=D, window=3, decoder=TINY_DECODER)
    if name == "smoothsa_video":
        return build_smoothsa_video(
            **common,
            slot_attention=SlotAttentionConfig(num_iters=3, mlp_dim=32, truncate="bi-level"),
            preheater=PreheatedInitializerConfig(),
            method=SmoothSAVideoConfig(conditional=conditional, transit_dropout=0.0),
        )
    return build_randsfq(
        **common,
        slot_attention=SlotAttentionConfig(num_iters=3, mlp_dim=32, truncate=None),
        method=RandSFQConfig(conditional=conditional, transit_dropout=0.0),
    )


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("name", ["smoothsa_video", "randsfq"])
def test_video_models_shapes(name, conditional):
    torch.manual_seed(0)
    model = _tiny_video_model(name, conditional)
    t = 5
    features = torch.randn(B, t, N, C)
    boxes = torch.rand(B, t, K, 4) if conditional else None
    for training in (True, False):
        out = model.train(training)(features=features, boxes=boxes)
        assert out.slots.shape == out.queries.shape == (B, t, K, D)
        assert out.attn.shape == out.decoder_attn.shape == (B, t, K, N)
        assert out.recon.shape == out.features.shape == out.inputs.shape == (B, t, N, C)
        torch.testing.assert_close(out.decoder_attn.sum(2), torch.ones(B, t, N))
    images = torch.randint(0, 256, (B, 2, 3, 64, 64), dtype=torch.uint8)
    out = model.eval()(images=images, boxes=None if boxes is None else boxes[:, :2])
    assert out.slots.shape == (B, 2, K, D)


def test_video_builders_refuse_sections_that_contradict_their_method():
    backbone = PatchStats(patch_size=16, feature_dim=C)
    common = dict(backbone=backbone, image_size=64, num_slots=K, slot_dim=D, decoder=TINY_DECODER)
    with pytest.raises(ValueError, match="truncates 'bi-level', not None"):
        build_smoothsa_video(
            **common,
            window=3,
            slot_attention=SlotAttentionConfig(truncate=None),
            preheater=PreheatedInitializerConfig(),
            method=SmoothSAVideoConfig(),
        )
    with pytest.raises(ValueError, match="window 3 differs from the method section's window 4"):
        build_randsfq(**common, window=3, slot_attention=SlotAttentionConfig(), method=RandSFQConfig(window=4))
