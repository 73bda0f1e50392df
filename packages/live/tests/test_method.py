"""The method (method.py): identities, norm preservation, gradients, losses by hand, hook hygiene."""

from __future__ import annotations

import math

import pytest
import torch
from vlrepro.live.method import (
    GlobalICVEncoder,
    answer_position_mask,
    causal_ce_loss,
    icv_hooks,
    kl_distillation_loss,
    live_loss,
    norm_preserving_shift,
    norm_preserving_shift_,
)
from vlrepro.live.prompts import VQAPrompt
from vlrepro.shared.hooks import count_hooks

FAMILIES = ("idefics", "idefics2")
P = VQAPrompt()


@pytest.mark.parametrize("fn", [norm_preserving_shift, norm_preserving_shift_])
def test_zero_shift_is_exact_identity(fn):
    h = torch.randn(3, 7, 16)
    assert torch.equal(fn(h, torch.zeros(16)), h)
    hb = h.bfloat16()
    out = fn(hb, torch.zeros(16))
    assert out.dtype == torch.bfloat16 and torch.equal(out, hb)


@pytest.mark.parametrize("fn", [norm_preserving_shift, norm_preserving_shift_])
def test_shift_keeps_each_token_norm_and_changes_direction(fn):
    torch.manual_seed(0)
    h = torch.randn(2, 5, 16)
    v = torch.randn(16)
    out = fn(h, v)
    torch.testing.assert_close(out.norm(dim=-1), h.norm(dim=-1))
    # hand computation of eqs. (2)-(3) for one token
    s = h[1, 3] + v
    torch.testing.assert_close(out[1, 3], s / s.norm() * h[1, 3].norm())
    assert not torch.allclose(out, h)
    # the in-place inference variant gives the same values, bf16 included
    hb = h.bfloat16()
    torch.testing.assert_close(norm_preserving_shift_(hb, v), norm_preserving_shift(hb, v), atol=0, rtol=0)
    assert torch.equal(norm_preserving_shift_(h, v), norm_preserving_shift(h, v))


@pytest.mark.parametrize("fn", [norm_preserving_shift, norm_preserving_shift_])
def test_shift_that_cancels_the_token_gives_zero_instead_of_nan(fn):
    h = torch.tensor([[[1.0, 2.0]], [[3.0, -1.0]]])
    v = torch.tensor([-1.0, -2.0])  # cancels token 0 exactly
    out = fn(h, v)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], torch.zeros(1, 2))
    s = h[1, 0] + v
    torch.testing.assert_close(out[1, 0], s / s.norm() * h[1, 0].norm())


def test_encoder_shapes_init_and_scales():
    torch.manual_seed(0)
    enc = GlobalICVEncoder(32, 4096, use_sigmoid=False, alpha_init_value=0.1)
    assert enc.icv.shape == (1, 32, 4096) and enc.alpha.shape == (1, 32)
    assert enc.num_trainable() == 131_104  # the paper's "0.13 M"
    assert abs(enc.icv.std().item() - 0.01) < 5e-4
    assert torch.equal(enc.scales(), torch.full((32,), 0.1))
    sig = GlobalICVEncoder(2, 4, use_sigmoid=True, alpha_init_value=0.0)
    assert torch.equal(sig.scales(), torch.full((2,), 0.5))
    torch.testing.assert_close(sig.layer_shift(1), 0.5 * sig.icv[0, 1])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("how", ["zero_vector", "alpha_zero"])
def test_identity_leaves_logits_exactly_unchanged(adapters, red_image, family, how):
    a = adapters[family]
    batch = [P.query_prompt(red_image, "What color is the square?", "red"), P.inference_prompt(red_image, "How many squares?")]
    enc = a.encode(batch, add_eos_token=True)
    with torch.no_grad():
        base = a.logits(enc)
        e = GlobalICVEncoder(a.num_layers, a.hidden_size, use_sigmoid=False, alpha_init_value=0.0 if how == "alpha_zero" else 0.7)
        if how == "zero_vector":
            e.icv.data.zero_()
        with icv_hooks(a.model, a.layer_names(), e):
            assert count_hooks(a.model) == a.num_layers
            hooked = a.logits(enc)
    assert torch.equal(hooked, base)
    assert count_hooks(a.model) == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_nonzero_vector_changes_logits_and_hooks_are_removed(adapters, red_image, family):
    a = adapters[family]
    enc = a.encode([P.inference_prompt(red_image, "What color is the square?")])
    torch.manual_seed(1)
    e = GlobalICVEncoder(a.num_layers, a.hidden_size, use_sigmoid=False, alpha_init_value=1.0, icv_init_std=1.0)
    with torch.no_grad():
        base = a.logits(enc)
        with icv_hooks(a.model, a.layer_names(), e):
            shifted = a.logits(enc)
        after = a.logits(enc)
    assert not torch.allclose(shifted, base)
    assert torch.equal(after, base)
    with pytest.raises(RuntimeError):
        with icv_hooks(a.model, a.layer_names(), e):
            raise RuntimeError("boom")
    assert count_hooks(a.model) == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_hooks_sit_where_the_paper_puts_them(adapters, family):
    a = adapters[family]
    names = a.layer_names()
    if family == "idefics":
        assert names == [f"model.layers.{i}" for i in range(a.num_layers)]
        assert type(a.model.get_submodule(names[0])).__name__ == "IdeficsDecoderLayer"
    else:
        assert names == [f"model.text_model.layers.{i}.mlp" for i in range(a.num_layers)]
        assert type(a.model.get_submodule(names[0])).__name__ == "MistralMLP"
    assert a.layer_names([1]) == names[1:2]


@pytest.mark.parametrize("family", FAMILIES)
def test_only_vector_and_alpha_get_gradients(adapters, red_image, family):
    a = adapters[family]
    enc = a.encode([P.query_prompt(red_image, "What color is the square?", "red")], add_eos_token=True)
    e = GlobalICVEncoder(a.num_layers, a.hidden_size, use_sigmoid=False, alpha_init_value=0.1)
    with icv_hooks(a.model, a.layer_names(), e):
        logits = a.logits(enc)
    loss = causal_ce_loss(logits, enc["input_ids"], enc["attention_mask"])
    loss.backward()
    assert e.icv.grad is not None and e.icv.grad.abs().sum() > 0
    assert e.alpha.grad is not None and e.alpha.grad.abs().sum() > 0
    assert all(p.grad is None for p in a.model.parameters())
    assert sum(p.numel() for p in e.parameters() if p.grad is not None) == a.num_layers * a.hidden_size + a.num_layers


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_under_hooks_beam_and_greedy(adapters, red_image, family):
    a = adapters[family]
    torch.manual_seed(2)
    e = GlobalICVEncoder(a.num_layers, a.hidden_size, use_sigmoid=False, alpha_init_value=1.0, icv_init_std=1.0)
    prompts = [P.inference_prompt(red_image, "What color is the square?"), P.inference_prompt(red_image, "How many?")]
    with icv_hooks(a.model, a.layer_names(), e):
        beam = a.generate(prompts)
        greedy = a.generate(prompts, num_beams=1)
    assert len(beam) == 2 and len(greedy) == 2 and all(isinstance(t, str) for t in beam + greedy)
    assert count_hooks(a.model) == 0


def test_kl_by_hand():
    t = torch.tensor([[2.0, 0.0, -1.0]])
    s = torch.tensor([[0.0, 1.0, 0.0]])
    pt, ps = torch.softmax(t, -1), torch.softmax(s, -1)
    expected = sum(pt[0, i] * (math.log(pt[0, i] + 1e-6) - math.log(ps[0, i] + 1e-6)) for i in range(3))
    torch.testing.assert_close(kl_distillation_loss(t, s), expected.float().reshape(()))
    torch.testing.assert_close(kl_distillation_loss(t, t), torch.tensor(0.0), atol=1e-6, rtol=0)
    # temperature: softmax(z / tau), times tau**2
    pt2, ps2 = torch.softmax(t / 2, -1), torch.softmax(s / 2, -1)
    exp2 = 4 * (pt2 * (torch.log(pt2 + 1e-6) - torch.log(ps2 + 1e-6))).sum()
    torch.testing.assert_close(kl_distillation_loss(t, s, temperature=2.0), exp2)
    with pytest.raises(ValueError, match="tokenises differently"):
        kl_distillation_loss(t, torch.zeros(2, 3))


def test_ce_by_hand_counts_only_masked_targets():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = math.log(3.0)  # p(token 2 | pos 0) = 3/6 = 0.5
    ids = torch.tensor([[1, 2, 0]])
    mask = torch.tensor([[1, 1, 0]])  # target at position 2 is padding
    torch.testing.assert_close(causal_ce_loss(logits, ids, mask), torch.tensor(math.log(2.0)))


def test_answer_masks_and_total_loss():
    attn = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    m = answer_position_mask(attn, torch.tensor([3, 4]))
    assert m.tolist() == [[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1]]
    torch.manual_seed(0)
    sl, tl = torch.randn(2, 6, 5), torch.randn(2, 8, 5)
    tm = torch.zeros(2, 8, dtype=torch.bool)
    tm[0, 5:7] = True
    tm[1, 6:8] = True
    ids = torch.randint(0, 5, (2, 6))
    out = live_loss(student_logits=sl, student_mask=m, student_input_ids=ids, ce_mask=attn, teacher_logits=tl,
                    teacher_mask=tm, hard_loss_weight=0.5)
    kl = kl_distillation_loss(tl[tm], sl[m])
    ce = causal_ce_loss(sl, ids, attn)
    torch.testing.assert_close(out["loss"], kl + 0.5 * ce)
    with pytest.raises(ValueError, match="only_hard_loss"):
        live_loss(student_logits=sl, student_mask=m, student_input_ids=ids, ce_mask=attn, teacher_logits=None,
                  teacher_mask=None, hard_loss_weight=0.0, only_hard_loss=True)
