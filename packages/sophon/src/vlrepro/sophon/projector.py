"""SQ-LLaVA's vision-language connectors (spec §1.1, §1.2).

The paper's *prototype extractor* (``mm_projector_type: cluster``) is
:class:`PrototypeExtractor`. It keeps all L visual tokens (576 for CLIP ViT-L/14-336) and adds to
each token the aggregate of the prototype ("cluster centre") it is assigned to, then maps the
result to the LLM width with a 2-layer MLP. The paper describes it as an EM-like loop (paper
Eq. 2-3):

    E-step   M = softmax(q(C) k(Z)^T)      (q = ``c``, k = ``v``)
    M-step   C = M v(Z)                    (value role = ``f``)

repeated T = 2 times from K = 256 initial centres. What follows is what the released code
computes, equation by equation, because that is what the released weights expect (numbers are
the steps of spec §1.1):

    (1)  V = v(X), F = f(X)                                         X: (B, L, D)
    (2)  C0 = pool_K(X), Fc = pool_K(F)          AdaptiveAvgPool1d along tokens: (B, K, D)
    (3)  for t in 1..T:  C = c(C);  A = softmax_K(norm_D(C) . norm_L(V)^T);  C = A F
    (4)  S = sigmoid(beta + alpha * cos(C, X))                     (B, K, L)
    (5)  M = one_hot(argmax_K S);  S = S * M                        hard assignment
    (6)  G_k = (sum_l S_kl F_l + Fc_k) / (sum_l M_kl + 1)           (B, K, D)
    (7)  X' = X + sum_k S_kl G_k;  out = mlp(X')                    (B, L, H)

Note ``norm_L``: V is L2-normalised along the *token* axis (each channel's column over the L
tokens has unit norm), not per token. That makes the E-step logits depend on the whole image; a
plain cosine gives different outputs (spec §1.1).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

#: the released projector: 256 centres, 2 EM iterations (``Clustering(D, H, 256, 2)``)
DEFAULT_NUM_CENTERS = 256
DEFAULT_CLUSTER_ITERS = 2


class QuickGELU(nn.Module):
    """CLIP's GELU approximation ``x * sigmoid(1.702 x)``; the cluster MLP uses it, not ``nn.GELU``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def pool_tokens(x: torch.Tensor, num_centers: int) -> torch.Tensor:
    """Adaptive average pooling along the token axis: (B, L, D) -> (B, K, D).

    ``AdaptiveAvgPool1d`` semantics: centre i averages tokens floor(iL/K) .. ceil((i+1)L/K)-1,
    so groups overlap when K does not divide L (at L=576, K=256 every group has 3 tokens) and
    tokens repeat when L < K. Never a reshape.
    """
    return F.adaptive_avg_pool1d(x.transpose(1, 2), num_centers).transpose(1, 2)


def pairwise_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` (B, K, D) with every row of ``b`` (B, L, D): (B, K, L)."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-2, -1)


class PrototypeExtractor(nn.Module):
    """The ``cluster`` projector: prototype extraction (Eq. 2-3 of the paper) + 2-layer MLP.

    Args:
        mm_hidden_size: D, width of the vision features (1024 for CLIP ViT-L).
        hidden_size: H, width of the LLM (4096 for 7B, 5120 for 13B).
        num_centers: K prototypes (256 in the release).
        iters: T EM iterations (2 in the release).

    Parameter names match the released ``mm_projector`` / ``non_lora_trainables`` keys:
    ``sim_alpha, sim_beta, c, v, f, ln_1, mlp.0, mlp.2``. ``ln_1`` is never used in the forward
    pass (it is commented out in the original); it exists only so that checkpoints load.
    """

    def __init__(self, mm_hidden_size: int, hidden_size: int, num_centers: int = DEFAULT_NUM_CENTERS,
                 iters: int = DEFAULT_CLUSTER_ITERS):
        super().__init__()
        d, h = mm_hidden_size, hidden_size
        self.num_centers = num_centers
        self.iters = iters
        self.sim_alpha = nn.Parameter(torch.ones(1, 1, 1))
        self.sim_beta = nn.Parameter(torch.zeros(1, 1, 1))
        self.c = nn.Linear(d, d)  # query role: updates the centres each iteration
        self.v = nn.Linear(d, d)  # key role: tokens compared with the centres
        self.f = nn.Linear(d, d)  # value role: what centres aggregate
        self.ln_1 = nn.LayerNorm(d)  # unused, kept for checkpoint compatibility
        self.mlp = nn.Sequential(OrderedDict([("0", nn.Linear(d, h)), ("1", QuickGELU()), ("2", nn.Linear(h, h))]))
        self._register_load_state_dict_pre_hook(_restore_sim_beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D) vision features -> (B, L, H) LLM input embeddings (L is preserved)."""
        value = self.v(x)  # (B, L, D)
        feature = self.f(x)  # (B, L, D)
        centers = pool_tokens(x, self.num_centers)  # (B, K, D)       step (2)
        centers_feature = pool_tokens(feature, self.num_centers)  # (B, K, D)
        value_token_normed = F.normalize(value, dim=1)  # unit norm over the L tokens per channel
        for _ in range(self.iters):  # step (3): E-step then M-step
            centers = self.c(centers)  # (B, K, D)
            logits = F.normalize(centers, dim=-1) @ value_token_normed.transpose(1, 2)  # (B, K, L)
            assign = logits.softmax(dim=1)  # over the centre axis: each token's weights sum to 1
            centers = assign @ feature  # (B, K, D), an unnormalised sum over tokens
        sim = torch.sigmoid(self.sim_beta + self.sim_alpha * pairwise_cosine(centers, x))  # (B, K, L) step (4)
        best = sim.argmax(dim=1, keepdim=True)  # (B, 1, L)                           step (5)
        mask = torch.zeros_like(sim).scatter_(1, best, 1.0)
        sim = sim * mask
        # step (6): centre aggregate, the pooled centre feature counts as one extra member
        agg = (sim @ feature + centers_feature) / (mask.sum(dim=-1, keepdim=True) + 1.0)  # (B, K, D)
        x = x + sim.transpose(1, 2) @ agg  # (B, L, D)                                 step (7)
        return self.mlp(x)


def _restore_sim_beta(state_dict, prefix, *args, **kwargs) -> None:
    """Undo transformers' legacy key rename ``beta`` -> ``bias`` for ``sim_beta``.

    ``PreTrainedModel.from_pretrained`` (4.x) renames every checkpoint key containing "beta" to
    "bias" (a TF-era LayerNorm fix), so ``mm_projector.sim_beta`` would silently stay at its
    initial 0 after a save/load round trip. This hook maps it back before the module loads.
    """
    renamed, wanted = prefix + "sim_bias", prefix + "sim_beta"
    if renamed in state_dict and wanted not in state_dict:
        state_dict[wanted] = state_dict.pop(renamed)


def cluster_param_count(mm_hidden_size: int, hidden_size: int) -> int:
    """Parameters of :class:`PrototypeExtractor`: 3(D^2+D) + 2 + 2D + (DH+H) + (H^2+H).

    24,130,562 at D=1024, H=4096 (7B); 34,618,370 at H=5120 (13B).
    """
    d, h = mm_hidden_size, hidden_size
    return 3 * (d * d + d) + 2 + 2 * d + (d * h + h) + (h * h + h)


def mlp_gelu(mm_hidden_size: int, hidden_size: int, depth: int = 2) -> nn.Sequential:
    """LLaVA-1.5's ``mlp{depth}x_gelu`` connector: Linear(D->H), then (GELU, Linear(H->H)) x (depth-1)."""
    layers: list[nn.Module] = [nn.Linear(mm_hidden_size, hidden_size)]
    for _ in range(1, depth):
        layers += [nn.GELU(), nn.Linear(hidden_size, hidden_size)]
    return nn.Sequential(*layers)


class CrossAttentionLayer(nn.Module):
    """One pre-LN cross-attention block: latent queries attend to the projected image tokens (§1.2 v1)."""

    def __init__(self, hidden_size: int, num_heads: int = 8):
        super().__init__()
        self.ln_q = nn.LayerNorm(hidden_size)
        self.ln_kv = nn.LayerNorm(hidden_size)
        self.attn = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.ln_ffn = nn.LayerNorm(hidden_size)
        self.ffn = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, latents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        kv = self.ln_kv(tokens)
        latents = latents + self.attn(self.ln_q(latents), kv, kv, need_weights=False)[0]
        return latents + self.ffn(self.ln_ffn(latents))


class CrossAttentionProjector(nn.Module):
    """Historical (Nov 2023, commit 8976a2d) connector: mlp2x_gelu, then N learnable latents
    cross-attend to the 576 projected tokens, so the LLM sees ``num_latents`` visual tokens.

    Absent from the released model; kept as ``mm_projector_type: cross_attn`` for ablations.
    Keys follow the original: ``latent_tokens``, ``crossA_layer``.
    """

    def __init__(self, mm_hidden_size: int, hidden_size: int, num_latents: int = 256, num_heads: int = 8):
        super().__init__()
        self.mlp = mlp_gelu(mm_hidden_size, hidden_size)
        self.latent_tokens = nn.Parameter(torch.randn(1, num_latents, hidden_size))
        heads = num_heads if hidden_size % num_heads == 0 else 1
        self.crossA_layer = CrossAttentionLayer(hidden_size, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.mlp(x)  # (B, L, H)
        latents = self.latent_tokens.expand(x.shape[0], -1, -1)  # (B, N, H)
        return self.crossA_layer(latents, tokens)  # (B, N, H)


PROJECTOR_TYPES = ("cluster", "mlp2x_gelu", "linear", "cross_attn", "identity")


def build_projector(projector_type: str, mm_hidden_size: int, hidden_size: int, *,
                    num_centers: int = DEFAULT_NUM_CENTERS, cluster_iters: int = DEFAULT_CLUSTER_ITERS,
                    num_latents: int = 256) -> nn.Module:
    """The connector named by ``mm_projector_type`` (``cluster``, ``mlpNx_gelu``, ``linear``, ``cross_attn``, ``identity``)."""
    if projector_type == "cluster":
        return PrototypeExtractor(mm_hidden_size, hidden_size, num_centers, cluster_iters)
    if projector_type == "linear":
        return nn.Linear(mm_hidden_size, hidden_size)
    if projector_type == "identity":
        return nn.Identity()
    if projector_type == "cross_attn":
        return CrossAttentionProjector(mm_hidden_size, hidden_size, num_latents)
    match = re.fullmatch(r"mlp(\d+)x_gelu", projector_type)
    if match:
        return mlp_gelu(mm_hidden_size, hidden_size, int(match.group(1)))
    raise ValueError(f"unknown mm_projector_type {projector_type!r}; known: {', '.join(PROJECTOR_TYPES)} (mlpNx_gelu for any N)")


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def init_like_torch_default(module: nn.Module) -> None:
    """Re-run torch's default init on every Linear (HF's ``_init_weights`` overwrites it with N(0, 0.02))."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5))
            if m.bias is not None:
                bound = 1 / math.sqrt(m.in_features)
                nn.init.uniform_(m.bias, -bound, bound)
