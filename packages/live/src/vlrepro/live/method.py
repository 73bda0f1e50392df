"""LIVE, the method: one learnable in-context vector per decoder layer (spec live.md §1).

Notation (spec §1.1-§1.3; equation numbers are the spec's, the paper's text was not available):

- (1)  parameters: ``V`` of shape (1, L, d) -- one vector ``v_l`` per hooked layer, ~N(0, 0.01²);
       ``alpha`` of shape (1, L), filled with ``alpha_init_value``; scale ``a_l = sigmoid(alpha_l)``
       if ``use_sigmoid`` else ``alpha_l``.
- (2)  shift, at every token position of the hooked module's output ``h`` (B, T, d):
       ``s = h + a_l * v_l``
- (3)  norm-preserving rescale, per token: ``h' = s / ||s||_2 * ||h||_2``
- (4)  distillation: ``L_d = tau² * mean_tokens sum_vocab p_T (log(p_T + eps) - log(p_S + eps))``,
       ``p = softmax(z / tau)``, teacher = frozen LMM with k demonstrations (no hooks, no grad),
       student = the same LMM on the query alone with the hooks on.
- (5)  total: ``L = L_d + hard_loss_weight * L_CE`` (``only_hard_loss``: ``L = L_CE``).

Hooks are native ``register_forward_hook`` hooks (replacing baukit's ``TraceDict``), placed where
the original places them: IDEFICS (v1) on each decoder layer's output, Idefics2 on each decoder
layer's MLP output (before the residual add). They are always removed on leaving the context.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from vlrepro.shared.hooks import get_submodule


class GlobalICVEncoder(nn.Module):
    """The trainable part of LIVE: ``icv`` (1, L, d) and ``alpha`` (1, L) -- eq. (1).

    Parameter names match the original checkpoint keys (``icv_encoder.icv``, ``icv_encoder.alpha``)
    once nested under a module attribute called ``icv_encoder``.
    """

    def __init__(
        self,
        llm_layers: int,
        llm_hidden_dim: int,
        *,
        use_sigmoid: bool = True,
        alpha_learnable: bool = True,
        alpha_init_value: float = 0.0,
        icv_init_std: float = 0.01,
    ) -> None:
        super().__init__()
        self.use_sigmoid = bool(use_sigmoid)
        # (1, L, d): the paper's initialisation N(0, 0.01²)
        self.icv = nn.Parameter(torch.randn(1, llm_layers, llm_hidden_dim) * icv_init_std)
        # (1, L)
        self.alpha = nn.Parameter(torch.full((1, llm_layers), float(alpha_init_value)), requires_grad=alpha_learnable)

    @property
    def num_layers(self) -> int:
        return self.icv.shape[1]

    def scales(self) -> torch.Tensor:
        """Per-layer scale ``a_l`` of eq. (1): sigmoid(alpha) or the raw alpha. Shape (L,)."""
        alpha = self.alpha[0]
        return torch.sigmoid(alpha) if self.use_sigmoid else alpha

    def shifts(self) -> torch.Tensor:
        """``a_l * v_l`` for every layer, shape (L, d) -- the term added in eq. (2)."""
        return self.scales()[:, None] * self.icv[0]

    def layer_shift(self, layer: int) -> torch.Tensor:
        """``a_l * v_l`` for one layer, shape (d,)."""
        alpha = self.alpha[0, layer]
        scale = torch.sigmoid(alpha) if self.use_sigmoid else alpha
        return scale * self.icv[0, layer]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def norm_preserving_shift(hidden: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Eqs. (2)-(3): add ``shift`` (d,) at every position of ``hidden`` (..., d), keep each token's norm.

    Computed as ``s * (||h|| / ||s||)`` so that a zero shift is *exactly* the identity
    (``s == h`` bitwise, ratio ``x / x == 1.0``), not just close to it. The arithmetic is fp32 and
    the result is cast back to ``hidden``'s dtype: with bf16 weights the fp32 shift would otherwise
    promote the residual stream (spec addendum). The original divides by ``||s||`` unguarded and
    returns NaN for a token the shift cancels exactly; here ``||s||`` is clamped at 1e-30, so such a
    token comes out as ``s`` itself, the zero vector. Autograd-safe (no in-place ops).
    """
    s = torch.add(hidden, shift.float())  # (..., d) fp32 (bf16 + fp32 promotes)
    h_norm = torch.linalg.vector_norm(hidden, dim=-1, keepdim=True, dtype=torch.float32)  # (..., 1)
    s_norm = torch.linalg.vector_norm(s, dim=-1, keepdim=True).clamp_min(_NORM_EPS)  # (..., 1)
    return (s * (h_norm / s_norm)).to(hidden.dtype)


def norm_preserving_shift_(hidden: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The same values as :func:`norm_preserving_shift` with in-place arithmetic on fresh tensors.

    For inference only (no autograd): five small kernels per call, which keeps the hooks' cost
    within a few percent of a decoding step even on tiny models. ``shift`` must be fp32.
    """
    s = torch.add(hidden, shift)  # (..., d) fp32
    ratio = torch.linalg.vector_norm(hidden, dim=-1, keepdim=True, dtype=torch.float32)  # (..., 1)
    ratio.div_(torch.linalg.vector_norm(s, dim=-1, keepdim=True).clamp_min_(_NORM_EPS))
    return s.mul_(ratio).to(hidden.dtype)


_NORM_EPS = 1e-30


@contextmanager
def icv_hooks(model: nn.Module, layer_names: Sequence[str], encoder: GlobalICVEncoder) -> Iterator[None]:
    """Within the block, the output of ``layer_names[l]`` is shifted by ``encoder``'s layer ``l``.

    One native forward hook per module (spec §8: resolved once, layer index bound by closure, no
    retention, no clone); for a tuple output only element 0 (the hidden states) is edited, so
    the tuple outputs of transformers <= 4.56 and the tensors of >= 4.57 both work. Every call
    of the module is shifted: training forwards, and the prompt and each decoding step of
    ``generate`` (KV cache included). All hooks are removed on exit, also on error.

    With gradients on (training) each call recomputes its row ``a_l * v_l`` from the parameters,
    so autograd reaches ``icv`` and ``alpha``. Without (generation), the (L, d) table of shifts is
    computed once per device and parameter version and each hook only indexes it: the hook then
    costs a handful of element-wise ops (see ``benchmarks/icv_overhead.py``).
    """
    if len(layer_names) != encoder.num_layers:
        raise ValueError(f"{len(layer_names)} hooked modules but the encoder has {encoder.num_layers} vectors")
    modules = [get_submodule(model, name) for name in layer_names]  # one-line error on a wrong name
    params = (encoder.icv, encoder.alpha)
    table: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def table_row(layer: int, h: torch.Tensor) -> torch.Tensor:
        # keyed on the parameters' version counters: an optimiser step invalidates the table
        key = (h.device, params[0]._version, params[1]._version)
        rows = table.get(key)
        if rows is None:
            table.clear()
            with torch.no_grad():
                rows = table[key] = encoder.shifts().float().to(h.device).unbind(0)  # L x (d,)
        return rows[layer]

    def shifted(layer: int, h: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (params[0].requires_grad or params[1].requires_grad):
            # training: only this layer's row a_l * v_l, (d,), a fresh autograd graph per call
            return norm_preserving_shift(h, encoder.layer_shift(layer).to(h.device))
        row = table_row(layer, h)
        if h.requires_grad and torch.is_grad_enabled():  # an unfrozen LMM: keep autograd intact
            return norm_preserving_shift(h, row)
        return norm_preserving_shift_(h, row)

    def make_hook(layer: int):
        def hook(_module: nn.Module, _inputs, output):
            if isinstance(output, tuple):
                return (shifted(layer, output[0]),) + output[1:]
            return shifted(layer, output)

        return hook

    handles = []
    try:
        for layer, module in enumerate(modules):
            handles.append(module.register_forward_hook(make_hook(layer)))
        yield
    finally:
        for handle in handles:
            handle.remove()


# ----------------------------------------------------------------------------- losses


def kl_distillation_loss(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Eq. (4): ``tau² * mean_n sum_v p_T (log(p_T + eps) - log(p_S + eps))`` over paired rows.

    Both inputs are the *selected* logits, shape (N, V), paired row by row (teacher row n and
    student row n predict the same answer token). Upcast to fp32 first: since transformers 4.46
    logits come back in the model dtype.
    """
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher selects {tuple(teacher_logits.shape)} answer logits but the student {tuple(student_logits.shape)}: "
            "the query tokenises differently inside and outside the demonstrations"
        )
    p_t = F.softmax(teacher_logits.float() / temperature, dim=-1)  # (N, V)
    p_s = F.softmax(student_logits.float() / temperature, dim=-1)  # (N, V)
    kl_per_token = (p_t * (torch.log(p_t + eps) - torch.log(p_s + eps))).sum(-1)  # (N,)
    return kl_per_token.mean() * temperature**2


def causal_ce_loss(logits: torch.Tensor, input_ids: torch.Tensor, label_mask: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy computed from the logits (the ``labels=`` path is not used).

    ``logits`` (B, T, V), ``input_ids`` (B, T), ``label_mask`` (B, T): which *target* tokens count.
    Position t's logits predict token t+1. transformers >= 4.52 crashes on IDEFICS ``labels=`` when
    ``additional_vocab_size > 0`` (spec §10), and computing it here makes the choice of counted
    positions explicit.
    """
    shift_logits = logits[:, :-1].float()  # (B, T-1, V)
    targets = input_ids[:, 1:]  # (B, T-1)
    keep = label_mask[:, 1:].bool()  # (B, T-1)
    if not keep.any():
        raise ValueError("no label positions selected for the cross-entropy")
    return F.cross_entropy(shift_logits[keep], targets[keep])


def answer_position_mask(attention_mask: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Positions ``t >= start[b]`` that are not padding (right padding), shape (B, T) bool.

    Spec §1.3 step 3: for the student ``start = query_x_length`` (non-pad length of the
    answer-less query, BOS included); for the teacher ``start = ice_length + query_x_length - 1``
    (the query's BOS is not repeated inside the teacher sequence). Both select the positions of
    the answer tokens, the "." and the EOS, in order.
    """
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)[None, :]  # (1, T)
    return (positions >= start[:, None].to(attention_mask.device)) & attention_mask.bool()


def live_loss(
    *,
    student_logits: torch.Tensor,
    student_mask: torch.Tensor,
    student_input_ids: torch.Tensor,
    ce_mask: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    teacher_mask: torch.Tensor | None,
    hard_loss_weight: float,
    only_hard_loss: bool = False,
    temperature: float = 1.0,
    kl_eps: float = 1e-6,
) -> dict[str, torch.Tensor]:
    """Eq. (5): ``L = L_d + hard_loss_weight * L_CE``; returns the total and its parts.

    ``student_mask``/``teacher_mask`` (B, T) select the paired answer logits of eq. (4);
    ``ce_mask`` (B, T) selects the CE targets.
    """
    out: dict[str, torch.Tensor] = {}
    total = student_logits.new_zeros((), dtype=torch.float32)
    if not only_hard_loss:
        if teacher_logits is None or teacher_mask is None:
            raise ValueError("the KL term needs the teacher's logits and mask")
        kl = kl_distillation_loss(
            teacher_logits[teacher_mask.bool()], student_logits[student_mask.bool()], temperature=temperature, eps=kl_eps
        )
        out["kl_loss"] = kl
        total = total + kl
    if only_hard_loss and hard_loss_weight == 0:
        raise ValueError("only_hard_loss=True with hard_loss_weight=0 leaves no loss (the original returns None)")
    if hard_loss_weight != 0:
        ce = causal_ce_loss(student_logits, student_input_ids, ce_mask)
        out["ce_loss"] = ce
        total = total + hard_loss_weight * ce
    out["loss"] = total
    return out
