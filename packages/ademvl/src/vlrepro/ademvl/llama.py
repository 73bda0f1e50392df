"""A compact Meta-format LLaMA (spec §2): the module ADEM-VL's fusion lives in, and its loader.

This is LLaMA-1 as Meta released it (``llama/model.py``), without fairscale and without
transformers: RMSNorm computed in fp32, complex ("interleaved pair") rotary embeddings with
θ = 10000 precomputed for 2 × ``max_seq_len``, SwiGLU FFN of width
``multiple_of · ceil((8d/3) / multiple_of)`` (11008 for 7B, 13824 for 13B), and a KV cache that
is allocated only for generation.

Weights come straight from Meta's files::

    <llama_model_path>/tokenizer.model                    SentencePiece, 32000 pieces, BOS 1, EOS 2
    <llama_model_path>/<llm_model>/params.json            {"dim", "n_heads", "n_layers", "multiple_of", "norm_eps", ...}
    <llama_model_path>/<llm_model>/consolidated.NN.pth    one per model-parallel shard (7B: 1, 13B: 2)

read with ``torch.load(weights_only=True)``. Several shards are merged back into one state dict
(:func:`merge_shards`): column-parallel weights (wq/wk/wv, w1/w3, output) concatenate on dim 0,
row-parallel ones (wo, w2) and ``tok_embeddings`` on dim 1, norms are copied from shard 0.

Each block keeps an empty ``adapter_mlp`` slot: a parameter-free module placed there is added
beside the FFN, ``out = h + FFN(z) + adapter_mlp(z)`` with ``z = RMSNorm_ffn(h)``; this is where
ADEM-VL's cross-attention goes (``method.py``). With the slot empty the block is plain LLaMA.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from vlrepro.shared.errors import MalformedFileError, MissingFileError, VlreproError

WEIGHTS_HOW = ("get the Meta-format LLaMA weights (tokenizer.model, <size>/params.json, <size>/consolidated.*.pth) "
               "and point llama_model_path (or --llama_model_path, MODEL_CPK_DIR) at the folder holding them")


# ----------------------------------------------------------------------------- configuration
@dataclass
class ModelArgs:
    """``params.json`` plus the run-time sizes the original passes in (``max_seq_len``, ``max_batch_size``)."""

    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    vocab_size: int = -1  # from the tokenizer, as in Meta's code
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None  # LLaMA-2 70B only; None for 7B/13B
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_seq_len: int = 512
    max_batch_size: int = 64

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def ffn_hidden(self) -> int:
        """SwiGLU width: ``int(2·4d/3)`` rounded up to ``multiple_of`` (11008 for d=4096)."""
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)

    @classmethod
    def from_params(cls, params: dict[str, Any], **runtime: Any) -> ModelArgs:
        """Build from a ``params.json`` dict; keys this module does not use (e.g. ``n_kv_heads`` == ``n_heads``) are checked."""
        known = {f.name for f in fields(cls)}
        kv = params.get("n_kv_heads")
        if kv is not None and kv != params.get("n_heads"):
            raise VlreproError(f"params.json has n_kv_heads={kv} != n_heads: grouped-query attention is not supported",
                               fix="use LLaMA-1 / LLaMA-2 7B or 13B weights")
        kw = {k: v for k, v in params.items() if k in known}
        kw.update(runtime)
        return cls(**kw)

    def to_params(self) -> dict[str, Any]:
        """The ``params.json`` subset (what Meta's file holds)."""
        d = asdict(self)
        out = {k: d[k] for k in ("dim", "multiple_of", "n_heads", "n_layers", "norm_eps", "vocab_size")}
        if self.ffn_dim_multiplier is not None:
            out["ffn_dim_multiplier"] = self.ffn_dim_multiplier
        return out


# ----------------------------------------------------------------------------- layers
class RMSNorm(nn.Module):
    """``x / rms(x) · w``, the statistics in fp32 and the result cast back (as Meta's code)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def precompute_freqs_cis(head_dim: int, end: int, theta: float = 10000.0, device: torch.device | str | None = None) -> torch.Tensor:
    """Complex rotations ``e^{i·t·θ^(-2j/hd)}``: ``[end, head_dim/2]`` complex64."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device)[: head_dim // 2].float() / head_dim))
    t = torch.arange(end, device=device, dtype=torch.float32)
    angles = torch.outer(t, freqs)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rotary_emb(xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate adjacent pairs (x0,x1), (x2,x3), … of q and k (Meta's layout; HF permutes wq/wk instead)."""
    # xq, xk: [B, L, H, hd]; freqs_cis: [L, hd/2]
    xq_ = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    rot = freqs_cis.view(1, xq_.shape[1], 1, xq_.shape[-1])
    xq_out = torch.view_as_real(xq_ * rot).flatten(3)
    xk_out = torch.view_as_real(xk_ * rot).flatten(3)
    return xq_out.type_as(xq), xk_out.type_as(xk)


class Attention(nn.Module):
    """Multi-head causal self-attention; softmax in fp32; optional KV cache for generation."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.n_heads
        self.head_dim = args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * self.head_dim, args.dim, bias=False)
        # plain attributes, not buffers: never saved, allocated by Transformer.setup_cache
        self.cache_k: torch.Tensor | None = None
        self.cache_v: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, start_pos: int, freqs_cis: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        xq = self.wq(x).view(bsz, seqlen, self.n_heads, self.head_dim)  # [B, L, H, hd]
        xk = self.wk(x).view(bsz, seqlen, self.n_heads, self.head_dim)
        xv = self.wv(x).view(bsz, seqlen, self.n_heads, self.head_dim)
        xq, xk = apply_rotary_emb(xq, xk, freqs_cis)
        if self.cache_k is not None:
            self.cache_k[:bsz, start_pos : start_pos + seqlen] = xk.to(self.cache_k.dtype)
            self.cache_v[:bsz, start_pos : start_pos + seqlen] = xv.to(self.cache_v.dtype)
            keys = self.cache_k[:bsz, : start_pos + seqlen].to(xq.dtype)
            values = self.cache_v[:bsz, : start_pos + seqlen].to(xq.dtype)
        else:
            keys, values = xk, xv
        q, k, v = xq.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2)  # [B, H, L|T, hd]
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)  # [B, H, L, T]
        if mask is not None:
            scores = scores + mask
        probs = F.softmax(scores.float(), dim=-1).type_as(q)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(bsz, seqlen, -1)  # [B, L, H·hd]
        return self.wo(out)


class FeedForward(nn.Module):
    """SwiGLU: ``w2(SiLU(w1 x) ⊙ w3 x)``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h = x + Attn(RMSNorm(x))``; ``out = h + FFN(z) [+ adapter_mlp(z)]`` with ``z = RMSNorm(h)``."""

    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__()
        self.layer_id = layer_id
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args.dim, args.ffn_hidden)
        self.attention_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, eps=args.norm_eps)
        #: a module added in parallel with the FFN on the same input (ADEM-VL's fusion); None = plain LLaMA
        self.adapter_mlp: nn.Module | None = None
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor, start_pos: int, freqs_cis: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            h = x + torch.utils.checkpoint.checkpoint(self.attention, self.attention_norm(x), start_pos, freqs_cis, mask,
                                                      use_reentrant=False)
            z = self.ffn_norm(h)
            out = h + torch.utils.checkpoint.checkpoint(self.feed_forward, z, use_reentrant=False)
        else:
            h = x + self.attention(self.attention_norm(x), start_pos, freqs_cis, mask)
            z = self.ffn_norm(h)
            out = h + self.feed_forward(z)
        if self.adapter_mlp is not None:
            out = out + self.adapter_mlp(z)
        return out


class Transformer(nn.Module):
    """Meta's LLaMA: ``tok_embeddings`` → blocks → ``norm`` → ``output`` (names as in ``consolidated.*.pth``)."""

    def __init__(self, params: ModelArgs):
        super().__init__()
        if params.vocab_size <= 0:
            raise ValueError("ModelArgs.vocab_size must be set (from the tokenizer) before building the model")
        self.params = params
        self.vocab_size = params.vocab_size
        self.n_layers = params.n_layers
        self.tok_embeddings = nn.Embedding(params.vocab_size, params.dim)
        self.layers = nn.ModuleList(TransformerBlock(i, params) for i in range(params.n_layers))
        self.norm = RMSNorm(params.dim, eps=params.norm_eps)
        self.output = nn.Linear(params.dim, params.vocab_size, bias=False)
        self._freqs: dict[str, torch.Tensor] = {}  # per device; not a buffer (Meta's files hold no such key)

    # ---------------------------------------------------------------- helpers
    def freqs_cis(self, device: torch.device, start: int, length: int) -> torch.Tensor:
        key = str(device)
        if key not in self._freqs:
            self._freqs[key] = precompute_freqs_cis(self.params.head_dim, self.params.max_seq_len * 2,
                                                    self.params.rope_theta, device=device)
        return self._freqs[key][start : start + length]

    @staticmethod
    def causal_mask(seqlen: int, start_pos: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """``[1, 1, L, start+L]`` additive mask: a query at position start+i sees keys ≤ start+i."""
        if seqlen == 1:
            return None
        mask = torch.full((seqlen, seqlen), float("-inf"), device=device)
        mask = torch.triu(mask, diagonal=1)
        if start_pos:
            mask = torch.cat([torch.zeros(seqlen, start_pos, device=device), mask], dim=1)
        return mask.view(1, 1, seqlen, -1).to(dtype)

    def setup_cache(self, batch_size: int, total_len: int, *, device: torch.device | None = None,
                    dtype: torch.dtype | None = None) -> None:
        """Allocate the KV cache (``[B, T, H, hd]`` per layer) for generation."""
        ref = self.tok_embeddings.weight
        device = device or ref.device
        dtype = dtype or ref.dtype
        shape = (batch_size, total_len, self.params.n_heads, self.params.head_dim)
        for layer in self.layers:
            layer.attention.cache_k = torch.zeros(shape, device=device, dtype=dtype)
            layer.attention.cache_v = torch.zeros(shape, device=device, dtype=dtype)

    def clear_cache(self) -> None:
        for layer in self.layers:
            layer.attention.cache_k = None
            layer.attention.cache_v = None

    # ---------------------------------------------------------------- forward
    def forward_embeds(self, h: torch.Tensor, start_pos: int = 0, mask: torch.Tensor | None | str = "causal") -> torch.Tensor:
        """Run the blocks on input embeddings ``h [B, L, d]`` and return logits ``[B, L, V]`` (fp32).

        ``mask="causal"`` builds the causal mask for positions ``start_pos … start_pos+L-1``;
        pass an explicit additive mask (e.g. with left padding) or None.
        """
        bsz, seqlen, _ = h.shape
        freqs = self.freqs_cis(h.device, start_pos, seqlen)
        if isinstance(mask, str):
            mask = self.causal_mask(seqlen, start_pos, h.device, h.dtype)
        for layer in self.layers:
            h = layer(h, start_pos, freqs, mask)
        return self.output(self.norm(h)).float()

    def forward(self, tokens: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """Logits ``[B, L, V]`` of token ids ``[B, L]``."""
        return self.forward_embeds(self.tok_embeddings(tokens), start_pos)


# ----------------------------------------------------------------------------- tokenizer
class Tokenizer:
    """Meta's SentencePiece wrapper: ``encode(s, bos, eos)`` / ``decode(ids)``; pad id −1 in LLaMA's model."""

    def __init__(self, model_path: str | Path):
        from sentencepiece import SentencePieceProcessor

        path = Path(model_path)
        if not path.is_file():
            raise MissingFileError(f"LLaMA tokenizer not found: {path}", fix=WEIGHTS_HOW)
        try:
            self.sp_model = SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as e:
            raise MalformedFileError(f"not a SentencePiece model: {path} ({e})", fix=WEIGHTS_HOW) from None
        self.n_words: int = self.sp_model.vocab_size()
        self.bos_id: int = self.sp_model.bos_id()
        self.eos_id: int = self.sp_model.eos_id()
        self.pad_id: int = self.sp_model.pad_id()

    def encode(self, s: str, bos: bool, eos: bool) -> list[int]:
        ids = self.sp_model.encode(s)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: list[int]) -> str:
        return self.sp_model.decode(ids)


# ----------------------------------------------------------------------------- Meta checkpoints
#: how Meta's model-parallel shards split each weight (fairscale Column/RowParallelLinear, ParallelEmbedding)
_SPLIT_DIM_RULES: tuple[tuple[str, int | None], ...] = (
    (r"^tok_embeddings\.weight$", 1),
    (r"^output\.weight$", 0),
    (r"\.attention\.w[qkv]\.weight$", 0),
    (r"\.feed_forward\.w[13]\.weight$", 0),
    (r"\.attention\.wo\.weight$", 1),
    (r"\.feed_forward\.w2\.weight$", 1),
    (r"norm\.weight$", None),  # replicated: copied from shard 0
)


def shard_split_dim(name: str) -> int | None:
    """The dim a weight is split along across shards (None: replicated in every shard)."""
    for pattern, dim in _SPLIT_DIM_RULES:
        if re.search(pattern, name):
            return dim
    raise KeyError(f"unknown LLaMA weight {name!r}")


def merge_shards(shards: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Merge Meta's model-parallel shards (e.g. 13B's two ``consolidated.0{0,1}.pth``) into one state dict.

    ``rope.freqs`` (present in some releases) is dropped: the module recomputes it.
    """
    if not shards:
        raise ValueError("no shards to merge")
    merged: dict[str, torch.Tensor] = {}
    for name in shards[0]:
        if name == "rope.freqs":
            continue
        dim = shard_split_dim(name)
        if len(shards) == 1 or dim is None:
            merged[name] = shards[0][name]
        else:
            merged[name] = torch.cat([s[name] for s in shards], dim=dim)
    return merged


def split_into_shards(state: dict[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
    """The inverse of :func:`merge_shards`: cut a full state dict into ``n`` Meta-style shards."""
    shards: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
    for name, t in state.items():
        dim = shard_split_dim(name)
        if dim is None:
            for s in shards:
                s[name] = t.clone()
        else:
            if t.shape[dim] % n:
                raise ValueError(f"{name} of shape {tuple(t.shape)} does not split in {n} along dim {dim}")
            for s, part in zip(shards, torch.chunk(t, n, dim=dim), strict=False):
                s[name] = part.clone()
    return shards


def hf_to_meta_state_dict(hf_state: dict[str, torch.Tensor], n_heads: int) -> dict[str, torch.Tensor]:
    """Map a transformers ``LlamaForCausalLM`` state dict to Meta names, un-permuting wq/wk (spec §2).

    transformers' converter permutes q/k rows so that ``rotate_half`` equals Meta's interleaved
    rotation; the inverse is ``w.view(H, 2, hd/2, D).transpose(1, 2).reshape(H·hd, D)``.
    """
    def unpermute(w: torch.Tensor) -> torch.Tensor:
        out_dim, in_dim = w.shape
        return w.view(n_heads, 2, out_dim // n_heads // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)

    names = {
        "model.embed_tokens.weight": "tok_embeddings.weight",
        "model.norm.weight": "norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk", "self_attn.v_proj": "attention.wv",
        "self_attn.o_proj": "attention.wo", "mlp.gate_proj": "feed_forward.w1", "mlp.down_proj": "feed_forward.w2",
        "mlp.up_proj": "feed_forward.w3", "input_layernorm": "attention_norm", "post_attention_layernorm": "ffn_norm",
    }
    out: dict[str, torch.Tensor] = {}
    for name, t in hf_state.items():
        if name in names:
            out[names[name]] = t
            continue
        m = re.match(r"^model\.layers\.(\d+)\.(.+)\.weight$", name)
        if not m or m.group(2) not in per_layer:
            if name.endswith("rotary_emb.inv_freq"):
                continue
            raise KeyError(f"unexpected transformers LLaMA weight {name!r}")
        meta = f"layers.{m.group(1)}.{per_layer[m.group(2)]}.weight"
        out[meta] = unpermute(t) if m.group(2) in ("self_attn.q_proj", "self_attn.k_proj") else t
    if "output.weight" not in out and "tok_embeddings.weight" in out:  # tied embeddings
        out["output.weight"] = out["tok_embeddings.weight"]
    return out


def read_params(ckpt_dir: str | Path) -> dict[str, Any]:
    path = Path(ckpt_dir) / "params.json"
    if not path.is_file():
        raise MissingFileError(f"LLaMA params.json not found: {path}", fix=WEIGHTS_HOW)
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MalformedFileError(f"LLaMA params.json is not valid JSON: {path} ({e})", fix=WEIGHTS_HOW) from None
    for key in ("dim", "n_heads", "n_layers"):
        if key not in params:
            raise MalformedFileError(f"LLaMA params.json lacks {key!r}: {path}", fix=WEIGHTS_HOW)
    return params


def shard_paths(ckpt_dir: str | Path) -> list[Path]:
    paths = sorted(Path(ckpt_dir).glob("consolidated.*.pth"))
    if not paths:
        raise MissingFileError(f"no consolidated.*.pth in {ckpt_dir}", fix=WEIGHTS_HOW)
    return paths


def load_shard(path: str | Path) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)``, memory-mapped where the file allows it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        try:  # legacy (non-zip) files cannot be memory-mapped
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling error is a bad file for the user
            raise MalformedFileError(f"cannot read LLaMA shard {path} ({type(e).__name__}: {e})", fix=WEIGHTS_HOW) from None
    except Exception as e:  # noqa: BLE001
        raise MalformedFileError(f"cannot read LLaMA shard {path} ({type(e).__name__}: {e})", fix=WEIGHTS_HOW) from None


def load_meta_state_dict(ckpt_dir: str | Path) -> dict[str, torch.Tensor]:
    """Read every ``consolidated.*.pth`` of ``ckpt_dir`` and merge them (a single shard passes through)."""
    return merge_shards([load_shard(p) for p in shard_paths(ckpt_dir)])


def load_llama(llama_model_path: str | Path, llm_model: str, *, max_seq_len: int = 512, max_batch_size: int = 64,
               dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> tuple[Transformer, Tokenizer]:
    """Load ``<llama_model_path>/tokenizer.model`` and ``<llama_model_path>/<llm_model>/`` (params + shards).

    The module is built on the meta device and the merged weights are assigned into it, so a
    7B model costs one copy of its weights in memory, not two.
    """
    root = Path(llama_model_path)
    ckpt_dir = root / llm_model
    tokenizer = Tokenizer(root / "tokenizer.model")
    params = read_params(ckpt_dir)
    args = ModelArgs.from_params(params, vocab_size=tokenizer.n_words, max_seq_len=max_seq_len, max_batch_size=max_batch_size)
    state = load_meta_state_dict(ckpt_dir)
    with torch.device("meta"):
        model = Transformer(args)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise MalformedFileError(
            f"LLaMA weights in {ckpt_dir} do not match params.json (missing {missing[:3]}, unexpected {unexpected[:3]})",
            fix=WEIGHTS_HOW)
    emb = state["tok_embeddings.weight"]
    if emb.shape[0] != tokenizer.n_words:
        raise MalformedFileError(f"tokenizer has {tokenizer.n_words} pieces but the embeddings {emb.shape[0]} rows",
                                 fix="use the tokenizer.model released with these weights")
    state = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model, tokenizer


def save_meta_checkpoint(model: Transformer, ckpt_dir: str | Path, *, n_shards: int = 1) -> list[Path]:
    """Write ``params.json`` and ``consolidated.NN.pth`` as Meta does (used for tiny test/smoke models)."""
    from vlrepro.shared.atomic import write_atomic, write_json_atomic

    out = Path(ckpt_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = model.params.to_params()
    params["vocab_size"] = -1  # Meta's files leave it to the tokenizer
    write_json_atomic(out / "params.json", params)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    paths = []
    for i, shard in enumerate(split_into_shards(state, n_shards)):
        path = out / f"consolidated.{i:02d}.pth"
        write_atomic(path, lambda tmp, s=shard: torch.save(s, tmp))
        paths.append(path)
    return paths
