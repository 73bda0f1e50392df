"""The prototype extractor (spec §1.1): shapes, a hand-computed value, the reference formulation, param counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from vlrepro.sophon.projector import (
    PrototypeExtractor,
    build_projector,
    cluster_param_count,
    count_params,
    pool_tokens,
)


def reference_forward(m: PrototypeExtractor, x: torch.Tensor) -> torch.Tensor:
    """The released ``Clustering.forward`` written out with its own broadcasting sums (spec §1.1)."""
    value = m.v(x).permute(0, 2, 1)  # [B, D, L]
    feature = m.f(x)
    centers = torch.nn.AdaptiveAvgPool1d(m.num_centers)(x.permute(0, 2, 1)).permute(0, 2, 1)
    centers_feature = torch.nn.AdaptiveAvgPool1d(m.num_centers)(feature.permute(0, 2, 1)).permute(0, 2, 1)
    for _ in range(m.iters):
        centers = m.c(centers)
        sim = torch.softmax(F.normalize(centers, dim=-1) @ F.normalize(value, dim=-1), dim=-2)
        centers = sim @ feature
    similarity = torch.sigmoid(m.sim_beta + m.sim_alpha * (F.normalize(centers, dim=-1) @ F.normalize(x, dim=-1).transpose(-2, -1)))
    _, idx = similarity.max(dim=1, keepdim=True)
    mask = torch.zeros_like(similarity).scatter_(1, idx, 1.0)
    similarity = similarity * mask
    out = ((feature.unsqueeze(1) * similarity.unsqueeze(-1)).sum(2) + centers_feature) / (mask.sum(-1, keepdim=True) + 1.0)
    out = x + (out.unsqueeze(2) * similarity.unsqueeze(-1)).sum(1)
    return m.mlp(out)


def test_output_shape_keeps_tokens():
    m = PrototypeExtractor(32, 64, num_centers=8, iters=2)
    assert m(torch.randn(2, 16, 32)).shape == (2, 16, 64)
    assert m(torch.randn(1, 5, 32)).shape == (1, 5, 64)  # L < K: pooled centres repeat tokens


def test_matches_reference_formulation_in_float64():
    torch.manual_seed(0)
    m = PrototypeExtractor(32, 48, num_centers=8, iters=2).double()
    with torch.no_grad():
        m.sim_alpha.fill_(3.0)
        m.sim_beta.fill_(-0.5)
    x = torch.randn(3, 20, 32, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_forward(m, x), rtol=1e-10, atol=1e-10)


def test_value_is_normalised_over_tokens_not_channels():
    """A cosine (per-token normalisation) would change the assignment; check the logits' axis directly."""
    torch.manual_seed(1)
    m = PrototypeExtractor(8, 8, num_centers=2, iters=1).double()
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    ref = reference_forward(m, x)
    with torch.no_grad():  # scaling one channel of V over all tokens leaves token-axis normalisation unchanged
        m.v.weight[0] *= 7.0
        m.v.bias[0] *= 7.0
    torch.testing.assert_close(m(x), ref)


def test_known_value_identity_construction():
    """Zeroed f, identity MLP: X' = X + sum_k S_kl G_k with G_k = Fc_k/(n_k+1) = 0 -> output equals X exactly."""
    m = PrototypeExtractor(4, 4, num_centers=2, iters=2).double()
    with torch.no_grad():
        m.f.weight.zero_(); m.f.bias.zero_()
        m.mlp[0].weight.copy_(torch.eye(4)); m.mlp[0].bias.zero_()
        m.mlp[2].weight.copy_(torch.eye(4)); m.mlp[2].bias.zero_()
    x = torch.rand(1, 4, 4, dtype=torch.float64) + 1.0  # positive: QuickGELU(x)=x*sigmoid(1.702x)
    expected = x * torch.sigmoid(1.702 * x)
    torch.testing.assert_close(m(x), expected)


def test_known_value_hand_computed():
    """D=H=1, two tokens, one centre: every quantity by hand.

    f = 2x, v = x, c = identity, alpha=1, beta=0, MLP identity (QuickGELU on the hidden).
    x = [1, 3]: F = [2, 6]; Fc = mean(F) = 4; C0 = mean(x) = 2. One centre, so A = 1 for both tokens
    and C = A F = 2 + 6 = 8. S_l = sigmoid(cos(8, x_l)) = sigmoid(1) for both; M = 1.
    G = (S*2 + S*6 + 4) / (2 + 1); X'_l = x_l + S*G; out = QuickGELU(X').
    """
    m = PrototypeExtractor(1, 1, num_centers=1, iters=1).double()
    with torch.no_grad():
        m.f.weight.fill_(2.0); m.f.bias.zero_()
        m.v.weight.fill_(1.0); m.v.bias.zero_()
        m.c.weight.fill_(1.0); m.c.bias.zero_()
        for lin in (m.mlp[0], m.mlp[2]):
            lin.weight.fill_(1.0); lin.bias.zero_()
    x = torch.tensor([[[1.0], [3.0]]], dtype=torch.float64)
    s = torch.sigmoid(torch.tensor(1.0, dtype=torch.float64))
    g = (s * 2 + s * 6 + 4) / 3
    xp = x + s * g
    expected = xp * torch.sigmoid(1.702 * xp)
    torch.testing.assert_close(m(x), expected)


def test_pool_overlaps_like_adaptive_avg_pool():
    x = torch.arange(576, dtype=torch.float64).view(1, 576, 1)
    c = pool_tokens(x, 256)
    assert c.shape == (1, 256, 1)
    # centre 1 covers tokens floor(576/256)=2 .. ceil(2*576/256)-1=4 -> mean(2,3,4) = 3
    assert c[0, 1, 0].item() == pytest.approx(3.0)


def test_param_names_and_gradients():
    m = PrototypeExtractor(32, 64, num_centers=8)
    names = {n.split(".")[0] if not n.startswith("mlp") else ".".join(n.split(".")[:2]) for n, _ in m.named_parameters()}
    assert names == {"sim_alpha", "sim_beta", "c", "v", "f", "ln_1", "mlp.0", "mlp.2"}
    m(torch.randn(2, 16, 32)).sum().backward()
    for n, p in m.named_parameters():
        if n.startswith("ln_1"):
            assert p.grad is None, n
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, n


@pytest.mark.parametrize("d,h,expected", [(1024, 4096, 24_130_562), (1024, 5120, 34_618_370), (32, 64, None)])
def test_param_count_formula(d, h, expected):
    if expected is not None:
        assert cluster_param_count(d, h) == expected
        with torch.device("meta"):
            m = PrototypeExtractor(d, h)
    else:
        m = PrototypeExtractor(d, h, num_centers=8)
    assert count_params(m) == cluster_param_count(d, h)


def test_mlp2x_gelu_and_cross_attention():
    with torch.device("meta"):
        mlp = build_projector("mlp2x_gelu", 1024, 4096)
    assert count_params(mlp) == 20_979_712
    ca = build_projector("cross_attn", 32, 64, num_latents=5)
    assert ca(torch.randn(2, 16, 32)).shape == (2, 5, 64)
    assert {"latent_tokens"} <= {n for n, _ in ca.named_parameters()}
    assert any(n.startswith("crossA_layer.") for n, _ in ca.named_parameters())
    with pytest.raises(ValueError):
        build_projector("nope", 4, 4)
