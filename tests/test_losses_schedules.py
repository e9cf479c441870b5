"""The DIAS objective and schedules: detaches, axes, signs and values at known steps."""

import math

import pytest
import torch

from dias.losses import reconstruction_loss
from dias.methods.dias.objective import distill_weight_at, distillation_loss, reinit_prob_at, select_distillation_pair
from dias.schedules import lr_at

B, K, N = 2, 7, 16


def _attn(*shape):
    return torch.randn(*shape).softmax(dim=-3 if len(shape) == 4 else 1)


def test_distillation_gradient_reaches_only_the_student():
    student = torch.randn(B, K, N).softmax(1).requires_grad_()
    teacher = torch.randn(B, K, N).softmax(1).requires_grad_()
    for form in ("prob", "log"):
        student.grad = teacher.grad = None
        distillation_loss(student, teacher, form).backward()
        assert teacher.grad is None
        assert student.grad is not None and student.grad.abs().sum() > 0


def test_distillation_prob_form_reproduces_the_release():
    student, teacher = _attn(B, K, N), _attn(B, K, N)
    expected = -(teacher * student.log_softmax(dim=1)).sum(dim=1).mean()  # probabilities used as logits
    torch.testing.assert_close(distillation_loss(student, teacher, "prob"), expected)
    uniform = torch.full((B, K, N), 1 / K)
    torch.testing.assert_close(distillation_loss(uniform, uniform, "prob"), torch.tensor(math.log(K)))
    assert distillation_loss(uniform, uniform, "log") == pytest.approx(math.log(K), rel=1e-5)


def test_distillation_forms_differ_and_log_form_is_cross_entropy():
    student, teacher = _attn(B, K, N), _attn(B, K, N)
    log_form = distillation_loss(student, teacher, "log")
    assert not torch.allclose(log_form, distillation_loss(student, teacher, "prob"))
    torch.testing.assert_close(log_form, -(teacher * student.log()).sum(1).mean(), rtol=1e-5, atol=1e-5)
    assert distillation_loss(teacher, teacher, "log") < log_form  # minimised when the student copies
    with pytest.raises(ValueError, match="unknown distillation form"):
        distillation_loss(student, teacher, "kl")


def test_distillation_runs_in_float32():
    student = _attn(B, K, N).to(torch.bfloat16)
    assert distillation_loss(student, student, "prob").dtype == torch.float32


def test_select_distillation_pair_is_first_and_last_iteration():
    attn = torch.stack([torch.full((B, K, N), float(t)) for t in range(4)])
    student, teacher = select_distillation_pair(attn)
    assert student.unique().item() == 0 and teacher.unique().item() == 3
    with pytest.raises(ValueError):
        select_distillation_pair(attn[:1])


def test_reconstruction_loss_does_not_train_the_target():
    recon = torch.randn(B, N, 8, requires_grad=True)
    features = torch.randn(B, N, 8, requires_grad=True)
    loss = reconstruction_loss(recon, features)
    torch.testing.assert_close(loss, ((recon - features) ** 2).mean())
    loss.backward()
    assert features.grad is None and recon.grad is not None


def test_lr_schedule():
    kw = dict(base_lr=2e-4, warmup_steps=100, total_steps=1000, final_lr=2e-7)
    assert lr_at(0, **kw) == 0.0  # the first step trains with lr 0, as released
    assert lr_at(50, **kw) == pytest.approx(1e-4)
    assert lr_at(100, **kw) == pytest.approx(2e-4)
    assert lr_at(550, **kw) == pytest.approx(0.5 * (2e-4 + 2e-7))
    assert lr_at(1000, **kw) == pytest.approx(2e-7)
    assert lr_at(5000, **kw) == pytest.approx(2e-7)
    values = [lr_at(s, **kw) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(values[:-1], values[1:], strict=True))


def test_distill_weight_schedule():
    assert distill_weight_at(0, 1000) == 0.0
    assert distill_weight_at(500, 1000) == pytest.approx(0.5)
    assert distill_weight_at(1000, 1000) == pytest.approx(1.0)
    assert distill_weight_at(500, 1000, final=2.0) == pytest.approx(1.0)
    assert distill_weight_at(0, 1000, schedule="constant") == 1.0


def test_reinit_probability_schedule():
    assert reinit_prob_at(0, 100, 0.8, "linear") == 0.0
    assert reinit_prob_at(50, 100, 0.8, "linear") == pytest.approx(0.4)
    assert reinit_prob_at(200, 100, 0.8, "linear") == pytest.approx(0.8)
    assert reinit_prob_at(0, 100, 0.8, "constant") == 0.8
    with pytest.raises(ValueError, match="choose 'constant' or 'linear'"):
        reinit_prob_at(0, 100, 0.8, "cosine")
