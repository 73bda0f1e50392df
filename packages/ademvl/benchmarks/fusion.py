"""ADEM-VL's cost: trainable parameters of the real architectures, and the fusion's forward-time overhead.

Prints ONE JSON line (issue 7 benchmark).

    python packages/ademvl/benchmarks/fusion.py                                 # CPU: counts + tiny-but-deep timing
    python packages/ademvl/benchmarks/fusion.py --device cuda --real-7b-step    # + the real 7B training step on a GPU

* ``trainable_params_7b`` / ``trainable_params_13b``: LLaMA-7B / 13B (Meta params.json sizes) + CLIP ViT-L/14
  (24 blocks, width 1024, 224 px, patch 14) built on the **meta device** with ADEM-VL's adapters
  (``adapter_dim`` 12, ``hidden_proj`` 128, ``down_sample_num`` 256 64, [cls] on), counting the parameters
  that require grad (names containing "adapter"). Paper: 4,530,432 and 5,449,984.
* ``fusion_over_plain_time`` (target <= 1.3): the forward time of a tiny-but-deep LLaMA (``--dim`` 256,
  ``--layers`` 8, ``--seq-len`` 256, batch 2; one CPU thread) with ADEM-VL's parameter-free
  cross-attention in every block (N = 320 visual tokens as with ``down_sample_num`` 256 64, adaptive drop γ = 0.1) over the same LLaMA
  without it, on the same input embeddings. Minimum over ``--repeats`` interleaved rounds. The fusion
  costs ~4·L·N·d FLOPs per layer against ~24·L·d² for the block, so the ratio shrinks as d grows: at the
  real d = 4096 it is what ``--real-7b-step`` reports as ``real_7b_fusion_over_plain_time``.
* ``--real-7b-step`` (CUDA): LLaMA-7B + CLIP ViT-L/14 with random **bf16** frozen weights (fp32 trainables,
  as the original keeps them), the seed's per-GPU batch (``batch_size`` 2, ``accum_iter`` 2) of
  ``--seq-len`` 512 tokens whose answer spans to the end (so no trimming: the worst case of
  ``max_seq_len`` 512), random 224 px images. One iteration = forward + backward of a batch, AdamW
  (β 0.9/0.95, wd 0.02) stepping every 2nd. Reports the mean seconds per iteration over ``--steps``
  iterations after 2 warm-ups, ``torch.cuda.max_memory_allocated`` (GiB), and the inference forward
  ratio fusion/plain of the real 7B LLaMA. No gradient checkpointing (as the paper's Table V).

Imports: torch, this package's ``llama``/``method`` modules and transformers' CLIP vision classes only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

try:
    from vlrepro.ademvl.llama import ModelArgs, Transformer
    from vlrepro.ademvl.method import (
        ADEMVL,
        AdemConfig,
        EmbeddedCrossAttention,
        VisualMemory,
        count_trainable,
    )
except ImportError:  # run from a checkout without the workspace installed (e.g. the GPU machine)
    _root = Path(__file__).resolve().parents[3]
    sys.path[:0] = [str(_root / "packages/ademvl/src"), str(_root / "shared/src")]
    from vlrepro.ademvl.llama import ModelArgs, Transformer
    from vlrepro.ademvl.method import (
        ADEMVL,
        AdemConfig,
        EmbeddedCrossAttention,
        VisualMemory,
        count_trainable,
    )

PAPER_7B, PAPER_13B = 4_530_432, 5_449_984
LLAMA_SIZES = {"7B": dict(dim=4096, n_layers=32, n_heads=32), "13B": dict(dim=5120, n_layers=40, n_heads=40)}


class StubTokenizer:
    """Only what ADEMVL's constructor needs: the ids of "Image: " (3 pieces) and "Image: N/A" (5), as LLaMA's."""

    bos_id, eos_id, n_words = 1, 2, 32000

    def encode(self, s: str, bos: bool, eos: bool) -> list[int]:
        ids = {"Image: ": [7084, 29901, 29871], "Image: N/A": [7084, 29901, 405, 29914, 29909]}[s]
        return ([1] if bos else []) + ids + ([2] if eos else [])


def clip_vit_l14():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=224, patch_size=14, projection_dim=768)
    model = CLIPVisionModel(cfg)
    if hasattr(model, "vision_model"):  # transformers 4.x
        return model.vision_model
    for _, sub in model.named_modules():  # other layouts: the module holding embeddings/encoder/post_layernorm
        if all(hasattr(sub, a) for a in ("embeddings", "encoder", "post_layernorm")):
            if not hasattr(sub, "config"):
                sub.config = cfg
            return sub
    raise RuntimeError(f"no CLIP vision transformer inside {type(model).__name__}: {[n for n, _ in model.named_children()]}")


def adem_cfg() -> AdemConfig:
    return AdemConfig(alpha=0.1, beta=0.01, drop_ratio=0.1, down_sample_num=(256, 64), hidden_proj=128, adapter_dim=12)


def count_real(size: str) -> int:
    """ADEM-VL on LLaMA-``size`` + ViT-L/14, built on the meta device (no memory), trainable parameters."""
    with torch.device("meta"):
        llama = Transformer(ModelArgs(**LLAMA_SIZES[size], vocab_size=32000))
        model = ADEMVL(llama, clip_vit_l14(), StubTokenizer(), adem_cfg())
    return count_trainable(model)


# ----------------------------------------------------------------------------- fusion overhead
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fusion_ratio(llama: Transformer, *, batch: int, seq_len: int, n_visual: int, drop_ratio: float, repeats: int,
                 device: torch.device, dtype: torch.dtype) -> dict[str, float]:
    """Forward time with the embedded cross-attention in every block over the plain blocks (same input)."""
    d = llama.params.dim
    g = torch.Generator(device="cpu").manual_seed(0)
    h = (torch.randn(batch, seq_len, d, generator=g) * 0.02).to(device, dtype)  # input embeddings [B, L, d]
    visual = (torch.randn(batch, n_visual, d, generator=g) * 0.01).to(device)  # V [B, N, d] (β-scaled scale)
    e1 = (torch.randn(1, n_visual, d, generator=g) * 0.02).to(device)
    memory = VisualMemory()
    memory.keys_act = torch.nn.functional.silu(visual + e1)  # SiLU(V + E₁)
    memory.values = visual.clone()  # V + E₂ with E₂ = 0 at init
    fusion = [EmbeddedCrossAttention(memory, 0.1, drop_ratio) for _ in llama.layers]

    def run(with_fusion: bool) -> float:
        for block, f in zip(llama.layers, fusion, strict=False):
            block.adapter_mlp = f if with_fusion else None
        _sync(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            llama.forward_embeds(h)
        _sync(device)
        return time.perf_counter() - t0

    run(True), run(False)  # warm-up
    plain, fused = [], []
    for _ in range(repeats):  # interleaved, so drifts hit both
        plain.append(run(False))
        fused.append(run(True))
    for block in llama.layers:
        block.adapter_mlp = None
    return {"plain_forward_s": min(plain), "fusion_forward_s": min(fused), "ratio": min(fused) / min(plain)}


def tiny_deep_llama(dim: int, layers: int, heads: int, device: torch.device, dtype: torch.dtype) -> Transformer:
    torch.manual_seed(0)
    with torch.device(device):
        llama = Transformer(ModelArgs(dim=dim, n_layers=layers, n_heads=heads, vocab_size=320, multiple_of=32,
                                      max_seq_len=1024))
    return llama.to(dtype).eval()


# ----------------------------------------------------------------------------- real 7B training step
def real_7b_step(*, seq_len: int, steps: int, batch_size: int = 2, accum_iter: int = 2) -> dict[str, float | int]:
    device = torch.device("cuda")
    torch.manual_seed(0)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.device(device):  # random init straight on the GPU, then frozen weights to bf16
        llama = Transformer(ModelArgs(**LLAMA_SIZES["7B"], vocab_size=32000, max_seq_len=512))
        llama.to(torch.bfloat16)
        vision = clip_vit_l14().to(torch.bfloat16)
        model = ADEMVL(llama, vision, StubTokenizer(), adem_cfg())  # trainables in fp32 (mark_trainable)
    model.train()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)  # the fp32 random init above is not part of training
    trainable = count_trainable(model)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1 and not n.endswith(".bias")]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and (p.ndim <= 1 or n.endswith(".bias"))]
    opt = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.02}],
                            lr=1.125e-3, betas=(0.9, 0.95))
    g = torch.Generator(device="cpu").manual_seed(1)
    examples = torch.randint(3, 32000, (batch_size, seq_len), generator=g)
    examples[:, 0] = 1
    labels = examples.clone()
    labels[:, : seq_len // 4] = 0  # prompt positions; the answer runs to the end (no trimming)
    images = torch.randn(batch_size, 3, 224, 224, generator=g)
    ind = torch.ones(batch_size, dtype=torch.long)
    batch = [t.to(device) for t in (examples, labels, images, ind)]
    weights_gib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30

    def iteration(i: int) -> float:
        loss = model(*batch)
        (loss / accum_iter).backward()
        if (i + 1) % accum_iter == 0:
            opt.step()
            opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    for i in range(2):
        iteration(i)
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for i in range(steps):
        last = iteration(i)
    torch.cuda.synchronize(device)
    per_iter = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in params)
    opt.zero_grad(set_to_none=True)
    model.eval()
    ratio = fusion_ratio(model.llama, batch=batch_size, seq_len=seq_len, n_visual=320, drop_ratio=0.1, repeats=5,
                         device=device, dtype=torch.bfloat16)
    return {"real_7b_trainable_params": trainable, "real_7b_train_s_per_iteration": round(per_iter, 4),
            "real_7b_peak_memory_gib": round(peak, 2), "real_7b_weights_gib": round(weights_gib, 2),
            "real_7b_last_loss": round(last, 4), "real_7b_fusion_over_plain_time": round(ratio["ratio"], 4),
            "real_7b_plain_forward_s": round(ratio["plain_forward_s"], 4),
            "real_7b_fusion_forward_s": round(ratio["fusion_forward_s"], 4),
            "gpu": torch.cuda.get_device_name(device), "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256, help="tiny-deep timing: text length")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--real-7b-step", action="store_true", help="CUDA: time the real 7B architecture's training step")
    ap.add_argument("--real-seq-len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda asked for but CUDA is not available (fix: run on a GPU machine or --device cpu)",
              file=sys.stderr)
        return 2
    if args.real_7b_step and device.type != "cuda":
        print("error: --real-7b-step needs --device cuda (fix: add --device cuda on a GPU machine)", file=sys.stderr)
        return 2
    out: dict[str, object] = {
        "trainable_params_7b": count_real("7B"), "trainable_params_13b": count_real("13B"),
        "paper_trainable_params_7b": PAPER_7B, "paper_trainable_params_13b": PAPER_13B,
    }
    out["trainable_params_match_paper"] = (out["trainable_params_7b"], out["trainable_params_13b"]) == (PAPER_7B, PAPER_13B)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cpu":
        torch.set_num_threads(1)  # one core: steadier timings on a shared machine
    llama = tiny_deep_llama(args.dim, args.layers, args.heads, device, dtype)
    r = fusion_ratio(llama, batch=args.batch, seq_len=args.seq_len, n_visual=320, drop_ratio=0.1,
                     repeats=args.repeats, device=device, dtype=dtype)
    out.update(fusion_over_plain_time=round(r["ratio"], 4), fusion_target=1.3,
               fusion_meets_target=r["ratio"] <= 1.3, plain_forward_s=round(r["plain_forward_s"], 5),
               fusion_forward_s=round(r["fusion_forward_s"], 5),
               tiny_deep_config=dict(dim=args.dim, layers=args.layers, heads=args.heads, seq_len=args.seq_len,
                                     batch=args.batch, n_visual=320, drop_ratio=0.1, dtype=str(dtype).split(".")[-1]),
               device=str(device))
    del llama
    if args.real_7b_step:
        out.update(real_7b_step(seq_len=args.real_seq_len, steps=args.steps))
        out["real_7b_config"] = dict(batch_size=2, accum_iter=2, seq_len=args.real_seq_len, dtype="bf16",
                                     trainable_dtype="fp32", gradient_checkpointing=False)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
