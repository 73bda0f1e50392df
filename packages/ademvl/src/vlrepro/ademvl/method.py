"""ADEM-VL (Hao et al., arXiv 2410.17779): adaptive and embedded fusion, as the original code implements it.

Notation follows the paper and spec §1. Per sample:

* **Eq. (1) visual features.** A frozen CLIP ViT runs all blocks but the last; its post-LayerNorm
  is applied to every token and the projection is skipped: ``F = [f_cls; f_1 … f_P]``
  (``[B, 1+P, C]``; ViT-L/14 at 224 px: P = 256, C = 1024). Each CLIP block carries a zero-initialised,
  bias-free adapter beside its MLP, ``x + MLP(LN₂ x) + 0.1·Ad(LN₂ x)`` (§1.5).
* **Eq. (2) multiscale pooling.** The patch grid is average-pooled to each size in
  ``down_sample_num`` (default 256 and 64 tokens) and concatenated: ``[B, N, C]`` with N = 320.
* **Eq. (3) projection.** ``V = β · 1[has image] · W₂ SiLU(W₁ F_ms)`` (``adapter_proj``), ``[B, N, d]``.
  Keys and values add two learnable tensors shared by every layer: ``K = V + E₁``, ``U = V + E₂``
  (``adapter_emb1`` ~ N(0, 0.02²), ``adapter_emb2`` = 0).
* **Eq. (4) parameter-free cross-attention**, inside every LLaMA block, beside the FFN:
  ``z = RMSNorm_ffn(h)``, ``A = SiLU(z) SiLU(K)ᵀ`` (``[B, L, N]``, no heads, no scaling, no softmax),
  ``out = h + FFN(z) + α · (M ⊙ A) U``.
* **Eq. (5) adaptive fusion.** ``M`` zeroes, per text token, the ``⌊γN⌋`` lowest raw scores
  (``drop_ratio`` γ): entries strictly below the (⌊γN⌋+1)-th smallest score.
* **Input-stage [cls] token.** A second projector maps ``f_cls`` to one LLM input embedding, placed
  after BOS and the embeddings of ``"Image: "`` (text-only samples get ``"Image: N/A"`` instead).

Only parameters whose name contains ``"adapter"`` train (E₁, E₂, both projectors, the CLIP
adapters): 4,530,432 for LLaMA-7B, 5,449,984 for 13B (:func:`trainable_parameter_count`).
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .llama import Tokenizer, Transformer

IMAGE_PREFIX = "Image: "
NO_IMAGE_PREFIX = "Image: N/A"


@dataclass
class AdemConfig:
    """The method's hyperparameters (the seed's flags of the same names)."""

    alpha: float = 0.1  # α, scale of the cross-attention output (the block attribute ``s`` in the original)
    beta: float = 0.01  # β, scale of the projected visual features V
    drop_ratio: float = 0.1  # γ of the adaptive drop; 0 disables it
    down_sample_num: Sequence[int] = field(default_factory=lambda: (256, 64))
    hidden_proj: int = 128  # projector bottleneck
    adapter_dim: int = 12  # CLIP adapter rank r (README 12, argparse default 8)
    with_cls: bool = True  # the [cls] input token (``--no_cls`` turns it off)
    clip_adapter_scale: float = 0.1  # fixed in the original

    @property
    def num_visual_tokens(self) -> int:
        return int(sum(self.down_sample_num))


# ----------------------------------------------------------------------------- CLIP side
class CLIPAdapter(nn.Module):
    """``Ad(x) = fc2(Dropout₀.₁(GELU(fc1 x)))``, bias-free, ``fc2`` zero so that Ad ≡ 0 at init (§1.5)."""

    def __init__(self, width: int, rank: int):
        super().__init__()
        self.fc1 = nn.Linear(width, rank, bias=False)
        self.fc2 = nn.Linear(rank, width, bias=False)
        self.dropout = nn.Dropout(0.1)
        nn.init.zeros_(self.fc2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.gelu(self.fc1(x))))


class MLPWithAdapter(nn.Module):
    """A CLIP block's MLP with the adapter beside it on the same (``layer_norm2``) input."""

    def __init__(self, mlp: nn.Module, width: int, rank: int, scale: float):
        super().__init__()
        self.mlp = mlp
        self.adapter = CLIPAdapter(width, rank)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) + self.scale * self.adapter(x.to(self.adapter.fc1.weight.dtype)).to(x.dtype)


class CLIPFeatures(nn.Module):
    """Eq. (1): transformers' ``CLIPVisionTransformer`` run as the original's modified ViT.

    All blocks but the last run (the last block and its adapter are dead weight, as in the
    original), ``post_layernorm`` is applied to every token and no projection follows.
    """

    def __init__(self, vision_model: nn.Module, adapter_dim: int, adapter_scale: float = 0.1):
        super().__init__()
        self.vision_model = vision_model
        cfg = vision_model.config
        self.width: int = cfg.hidden_size
        self.grid: int = cfg.image_size // cfg.patch_size
        self.image_size: int = cfg.image_size
        for layer in vision_model.encoder.layers:
            layer.mlp = MLPWithAdapter(layer.mlp, self.width, adapter_dim, adapter_scale)
        # the vision tower has no masks; name them as the installed transformers' encoder layer does
        accepted = inspect.signature(vision_model.encoder.layers[0].forward).parameters
        self._no_masks = {k: None for k in ("attention_mask", "causal_attention_mask") if k in accepted}

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vm = self.vision_model
        h = vm.pre_layrnorm(vm.embeddings(pixel_values))  # [B, 1+P, C]
        for layer in vm.encoder.layers[:-1]:
            out = layer(h, **self._no_masks)
            h = out[0] if isinstance(out, tuple) else out  # transformers 4.x returns a tuple, 5.x the tensor
        return vm.post_layernorm(h)


# ----------------------------------------------------------------------------- Eq. (2), (3)
class MultiscaleSampler(nn.Module):
    """Eq. (2): average-pool the √P×√P patch grid to each √s×√s and concatenate (no parameters).

    Every scale is pooled with ``adaptive_avg_pool2d`` (the original passes 16×16 through
    unpooled, which is the identity only on a 16×16 grid), and one scale alone is allowed.
    """

    def __init__(self, down_sample_num: Sequence[int]):
        super().__init__()
        sizes = [int(s) for s in down_sample_num]
        if not sizes:
            raise ValueError("down_sample_num needs at least one size")
        self.sides: list[int] = []
        for s in sizes:
            side = math.isqrt(s)
            if s <= 0 or side * side != s:
                raise ValueError(f"down_sample_num entries must be perfect squares, got {s}")
            self.sides.append(side)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        b, p, c = patches.shape  # [B, P, C]
        g = math.isqrt(p)
        if g * g != p:
            raise ValueError(f"{p} patch tokens do not form a square grid")
        if max(self.sides) > g:
            raise ValueError(f"down_sample_num asks for a {max(self.sides)}x{max(self.sides)} grid from a {g}x{g} one")
        grid = patches.reshape(b, g, g, c).permute(0, 3, 1, 2)  # [B, C, g, g]
        scales = [F.adaptive_avg_pool2d(grid, s).flatten(2).transpose(1, 2) for s in self.sides]  # [B, s², C]
        return torch.cat(scales, dim=1)  # [B, N, C]


class Projector(nn.Module):
    """``fc2(SiLU(fc1 x))`` with xavier-uniform weights and zero biases, computed in fp32."""

    def __init__(self, in_features: int, hidden: int, out_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, out_features)
        for lin in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x.to(self.fc1.weight.dtype))))


# ----------------------------------------------------------------------------- Eq. (4), (5)
def adaptive_drop(scores: torch.Tensor, drop_ratio: float) -> torch.Tensor:
    """Eq. (5): zero each row's entries below its ``k``-th order statistic, ``k = int(γ·N)``.

    ``τ = sort(row)[k]`` (0-based, i.e. the (k+1)-th smallest); entries ``< τ`` become 0, so the
    ``k`` lowest raw scores go (fewer where scores tie at τ). γ = 0 returns ``scores`` unchanged.
    """
    n = scores.shape[-1]
    k = int(drop_ratio * n)  # in floating point as the original: γ=0.29, N=100 gives 28
    if drop_ratio <= 0 or k <= 0:
        return scores
    k = min(k, n - 1)
    tau = scores.detach().kthvalue(k + 1, dim=-1, keepdim=True).values  # [B, L, 1]
    return scores.masked_fill(scores < tau, 0.0)


def parameter_free_cross_attention(z: torch.Tensor, keys_act: torch.Tensor, values: torch.Tensor,
                                   drop_ratio: float) -> torch.Tensor:
    """Eq. (4) without α: ``(M ⊙ SiLU(z) SiLU(K)ᵀ) U``.

    Args:
        z: the FFN input ``RMSNorm_ffn(h)``, ``[B, L, d]``.
        keys_act: ``SiLU(V + E₁)``, ``[B, N, d]`` (computed once per forward, shared by all layers).
        values: ``V + E₂``, ``[B, N, d]``.
    """
    scores = F.silu(z) @ keys_act.transpose(1, 2)  # [B, L, N]
    scores = adaptive_drop(scores, drop_ratio)
    return scores @ values  # [B, L, d]


class VisualMemory:
    """The per-forward visual keys/values every layer reads (set by :meth:`ADEMVL.visual_memory`)."""

    def __init__(self) -> None:
        self.keys_act: torch.Tensor | None = None  # SiLU(V + E₁) [B, N, d]
        self.values: torch.Tensor | None = None  # V + E₂ [B, N, d]


class EmbeddedCrossAttention(nn.Module):
    """The ``adapter_mlp`` slot of each LLaMA block: ``α · (M ⊙ SiLU(z)SiLU(K)ᵀ) U`` (no parameters)."""

    def __init__(self, memory: VisualMemory, alpha: float, drop_ratio: float):
        super().__init__()
        self.memory = memory
        self.alpha = alpha
        self.drop_ratio = drop_ratio

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        mem = self.memory
        if mem.keys_act is None or mem.values is None:
            raise RuntimeError("ADEM-VL fusion ran without visual memory (use ADEMVL.visual_memory)")
        keys, values = mem.keys_act.to(z.dtype), mem.values.to(z.dtype)
        return self.alpha * parameter_free_cross_attention(z, keys, values, self.drop_ratio)


# ----------------------------------------------------------------------------- the model
class ADEMVL(nn.Module):
    """LLaMA + CLIP with ADEM-VL's fusion; ``forward`` returns the training loss, ``generate`` text."""

    def __init__(self, llama: Transformer, vision_model: nn.Module, tokenizer: Tokenizer, cfg: AdemConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.llama = llama
        self.clip = CLIPFeatures(vision_model, cfg.adapter_dim, cfg.clip_adapter_scale)
        d, c, n = llama.params.dim, self.clip.width, cfg.num_visual_tokens
        self.sampler = MultiscaleSampler(cfg.down_sample_num)
        if max(self.sampler.sides) > self.clip.grid:
            raise ValueError(f"down_sample_num {list(cfg.down_sample_num)} needs a grid larger than CLIP's "
                             f"{self.clip.grid}x{self.clip.grid}")
        ref = llama.tok_embeddings.weight
        self.adapter_emb1 = nn.Parameter(torch.randn(1, n, d, device=ref.device) * 0.02)  # E₁ [1, N, d]
        self.adapter_emb2 = nn.Parameter(torch.zeros(1, n, d, device=ref.device))  # E₂ [1, N, d]
        self.adapter_proj = Projector(c, cfg.hidden_proj, d).to(ref.device)
        self.adapter_proj_cls = Projector(c, cfg.hidden_proj, d).to(ref.device) if cfg.with_cls else None
        self.memory = VisualMemory()
        for block in llama.layers:
            block.adapter_mlp = EmbeddedCrossAttention(self.memory, cfg.alpha, cfg.drop_ratio)
        self.prefix_img: list[int] = tokenizer.encode(IMAGE_PREFIX, bos=False, eos=False)
        self.prefix_nonimg: list[int] = tokenizer.encode(NO_IMAGE_PREFIX, bos=False, eos=False)
        self.mark_trainable()

    # ---------------------------------------------------------------- parameters
    def mark_trainable(self) -> None:
        """Train exactly the parameters whose name contains "adapter" (as the original), in fp32."""
        for name, p in self.named_parameters():
            p.requires_grad_("adapter" in name)
            if p.requires_grad and p.dtype != torch.float32 and p.device.type != "meta":
                p.data = p.data.float()

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable parameters only (what checkpoints hold)."""
        return {n: p.detach() for n, p in self.named_parameters() if "adapter" in n}

    def load_adapter_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load adapter weights; the original's ``module.`` (DDP) prefix is accepted."""
        own = dict(self.named_parameters())
        clean = translate_original_checkpoint(state)
        missing = [k for k in own if "adapter" in k and k not in clean]
        unknown = [k for k in clean if k not in own]
        if missing or unknown:
            raise KeyError(f"adapter checkpoint does not fit this model: missing {missing[:4]}, unknown {unknown[:4]}")
        with torch.no_grad():
            for k, v in clean.items():
                if own[k].shape != v.shape:
                    raise KeyError(f"adapter weight {k} has shape {tuple(v.shape)}, model wants {tuple(own[k].shape)}")
                own[k].copy_(v)

    # ---------------------------------------------------------------- Eq. (1)-(3)
    def encode_images(self, images: torch.Tensor, indicators: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``V = β·1[img]·proj(pool(F_patches))`` ``[B, N, d]`` and the [cls] embedding ``[B, 1, d]``."""
        clip_dtype = self.clip.vision_model.embeddings.patch_embedding.weight.dtype
        feats = self.clip(images.to(clip_dtype))  # [B, 1+P, C]
        gate = (self.cfg.beta * indicators.to(torch.float32)).view(-1, 1, 1)
        visual = self.adapter_proj(self.sampler(feats[:, 1:])) * gate  # [B, N, d] fp32
        cls = self.adapter_proj_cls(feats[:, :1]) if self.adapter_proj_cls is not None else None  # [B, 1, d]
        return visual, cls

    @contextmanager
    def visual_memory(self, visual: torch.Tensor) -> Iterator[None]:
        """Set ``SiLU(V+E₁)`` and ``V+E₂`` for every layer for the duration of one forward/generation."""
        self.memory.keys_act = F.silu(visual + self.adapter_emb1)
        self.memory.values = visual + self.adapter_emb2
        try:
            yield
        finally:
            self.memory.keys_act = None
            self.memory.values = None

    # ---------------------------------------------------------------- §1.4 input layout
    def _prefix_embeds(self, ids: list[int], like: torch.Tensor) -> torch.Tensor:
        return self.llama.tok_embeddings(torch.tensor(ids, dtype=torch.long, device=like.device))

    def insert_prefix(self, embeds: torch.Tensor, labels: torch.Tensor, cls: torch.Tensor | None,
                      indicators: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """After BOS insert ``"Image: "`` + [cls] (image) or ``"Image: N/A"`` (none), labels 0; cut back to length."""
        if cls is None:
            return embeds, labels
        seqlen = embeds.shape[1]
        pre_img = self._prefix_embeds(self.prefix_img, embeds)  # [P_img, d]
        pre_non = self._prefix_embeds(self.prefix_nonimg, embeds)  # [P_non, d]
        rows, row_labels = [], []
        for i in range(embeds.shape[0]):
            if indicators[i] > 0:
                inserted = torch.cat([pre_img, cls[i].to(embeds.dtype)], dim=0)
            else:
                inserted = pre_non
            rows.append(torch.cat([embeds[i, :1], inserted, embeds[i, 1:]], dim=0)[:seqlen])
            zeros = torch.zeros(inserted.shape[0], dtype=labels.dtype, device=labels.device)
            row_labels.append(torch.cat([labels[i, :1], zeros, labels[i, 1:]])[:seqlen])
        return torch.stack(rows), torch.stack(row_labels)

    def build_inputs(self, examples: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                     indicators: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input embeddings ``[B, L, d]``, labels ``[B, L]`` and V, trimmed to the last labelled position."""
        visual, cls = self.encode_images(images, indicators)
        embeds = self.llama.tok_embeddings(examples)  # [B, S, d]
        embeds, labels = self.insert_prefix(embeds, labels, cls, indicators)
        labelled = (labels > 0).nonzero(as_tuple=False)
        last = int(labelled[:, 1].max()) + 1 if labelled.numel() else embeds.shape[1]
        return embeds[:, :last], labels[:, :last], visual

    def logits(self, examples: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
               indicators: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, L, V]`` and the aligned labels of the training layout."""
        embeds, labels, visual = self.build_inputs(examples, labels, images, indicators)
        with self.visual_memory(visual):
            return self.llama.forward_embeds(embeds), labels

    def forward(self, examples: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                indicators: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy over answer tokens and EOS (label 0 = ignored, as the original)."""
        logits, labels = self.logits(examples, labels, images, indicators)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=0)

    # ---------------------------------------------------------------- generation
    def prompt_tokens(self, prompt: str, has_image: bool) -> list[int]:
        """``BOS "Image: " [cls-slot] prompt`` | ``BOS "Image: N/A" prompt`` | ``BOS prompt`` (no cls)."""
        body = self.tokenizer.encode(prompt, bos=False, eos=False)
        if not self.cfg.with_cls:
            return [self.tokenizer.bos_id] + body
        if has_image:
            return [self.tokenizer.bos_id] + self.prefix_img + [0] + body
        return [self.tokenizer.bos_id] + self.prefix_nonimg + body

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], images: torch.Tensor, indicators: torch.Tensor, max_gen_len: int, *,
                 temperature: float = 0.0, top_p: float = 0.95, max_total_len: int = 512, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> list[str]:
        """Greedy (temperature 0) or top-p decoding of left-padded prompts (spec §1.4), stopping when all rows hit EOS."""
        device = self.llama.tok_embeddings.weight.device
        bsz = len(prompts)
        indicators = indicators.to(device)
        visual, cls = self.encode_images(images.to(device), indicators)
        token_lists = [self.prompt_tokens(p, bool(indicators[i] > 0)) for i, p in enumerate(prompts)]
        max_prompt = max(len(t) for t in token_lists)
        total_len = min(max_total_len, max_prompt + max_gen_len)
        prompt_room = total_len - max_gen_len
        tokens = torch.zeros(bsz, total_len, dtype=torch.long, device=device)
        pad_lens = []
        for i, t in enumerate(token_lists):
            t = t[:prompt_room]
            tokens[i, prompt_room - len(t) : prompt_room] = torch.tensor(t, device=device)
            pad_lens.append(prompt_room - len(t))
        embeds = self.llama.tok_embeddings(tokens)  # [B, T, d]
        if cls is not None:
            slot = 1 + len(self.prefix_img)  # after BOS and "Image: "
            for i in range(bsz):
                if indicators[i] > 0 and pad_lens[i] + slot < prompt_room:
                    embeds[i, pad_lens[i] + slot] = cls[i, 0].to(embeds.dtype)
        # [B, 1, T, T]: causal, and real queries never see the left padding
        mask = torch.triu(torch.full((total_len, total_len), float("-inf"), device=device), diagonal=1)
        mask = mask.expand(bsz, 1, total_len, total_len).clone()
        for i, pad in enumerate(pad_lens):
            mask[i, :, pad:, :pad] = float("-inf")
        mask = mask.to(embeds.dtype)
        alive = torch.ones(bsz, dtype=torch.bool, device=device)
        with self.visual_memory(visual):
            if use_cache:
                self.llama.setup_cache(bsz, total_len, dtype=embeds.dtype)
            try:
                prev = 0
                for cur in range(prompt_room, total_len):
                    start = prev if use_cache else 0
                    logits = self.llama.forward_embeds(embeds[:, start:cur], start, mask[:, :, start:cur, :cur])[:, -1]
                    if temperature > 0:
                        probs = torch.softmax(logits / temperature, dim=-1)
                        nxt = sample_top_p(probs, top_p, generator)
                    else:
                        nxt = logits.argmax(dim=-1)
                    tokens[:, cur] = nxt
                    embeds[:, cur] = self.llama.tok_embeddings(nxt)
                    alive &= nxt != self.tokenizer.eos_id
                    if not alive.any():
                        break
                    prev = cur
            finally:
                self.llama.clear_cache()
        out = []
        for row in tokens[:, prompt_room:].tolist():
            if self.tokenizer.eos_id in row:
                row = row[: row.index(self.tokenizer.eos_id)]
            out.append(self.tokenizer.decode(row))
        return out


def sample_top_p(probs: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Nucleus sampling: keep the smallest prefix of sorted probabilities with mass > p."""
    sorted_p, idx = torch.sort(probs, dim=-1, descending=True)
    drop = sorted_p.cumsum(dim=-1) - sorted_p > p
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    sorted_p = sorted_p / sorted_p.sum(dim=-1, keepdim=True)
    pick = torch.multinomial(sorted_p, 1, generator=generator)
    return idx.gather(-1, pick).squeeze(-1)


def _original_clip_adapter_name(name: str) -> str | None:
    """``backbone.visual.transformer.resblocks.N.adapter_mlp.fcK.weight`` → our CLIP adapter name."""
    m = re.match(r"^backbone\.visual\.transformer\.resblocks\.(\d+)\.adapter_mlp\.(fc[12])\.weight$", name)
    if not m:
        return None
    return f"clip.vision_model.encoder.layers.{m.group(1)}.mlp.adapter.{m.group(2)}.weight"


def translate_original_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a released ADEM-VL checkpoint's ``model`` dict (DDP prefix, OpenAI CLIP names) to ours."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        out[_original_clip_adapter_name(k) or k] = v
    return out


# ----------------------------------------------------------------------------- parameter count (§1.6)
def trainable_parameter_count(*, llm_dim: int, num_visual_tokens: int = 320, clip_width: int = 1024,
                              clip_layers: int = 24, hidden_proj: int = 128, adapter_dim: int = 12,
                              with_cls: bool = True) -> int:
    """``2·N·d + (1+cls)·(C·h + h + h·d + d) + L_clip·2·C·r`` — 4,530,432 for 7B, 5,449,984 for 13B."""
    projector = clip_width * hidden_proj + hidden_proj + hidden_proj * llm_dim + llm_dim
    return (2 * num_visual_tokens * llm_dim + (2 if with_cls else 1) * projector
            + clip_layers * 2 * clip_width * adapter_dim)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
