"""Cost of one LCL episode vs shots: prefill, greedy decoding, a training step, memory (one JSON line).

    python packages/lcl/benchmarks/episode_cost.py                          # CPU, tiny Shikra-layout model
    python packages/lcl/benchmarks/episode_cost.py --real --device cuda     # Shikra-7B architecture, random fp16

What it measures, for each ``shot`` (support images PER CLASS; the paper's N-shot is N = 2 x shot):
an episode of 2 x shot support rounds + the query round laid out exactly as
``vlrepro.lcl.method.encode_rounds`` lays it out (per-round BOS, ``<im_start>`` + image_token_len x
``<im_patch>`` + ``<im_end>`` per image, middle rounds without ``</s>``), batch size 1, through
``vlrepro.lcl.model.LCLForCausalLM``:

- ``prefill_ms``: one forward over the whole prompt (CLIP on the 2 x shot + 1 images, projector,
  splice, LLaMA), KV cache on;
- ``generate_ms`` / ``decode_ms_per_token``: ``greedy_generate`` for ``--new-tokens`` tokens (EOS
  disabled so every run decodes the same number of steps; the answer ``there is "x" in the image.</s>``
  is ~12-16 LLaMA tokens);
- ``train_step_ms``: forward + backward with labels on the final answer only (spec §2.4), gradient
  checkpointing on (as the original), no optimizer step (AdamW state would add 2 x fp32 params: the
  original shards it with FSDP over 8 GPUs);
- memory: CUDA ``max_memory_allocated`` (weights + activations) per phase; on CPU the process's peak RSS.

Text token counts per round are the LLaMA tokenizer's for the original strings, estimated (the real
tokenizer is not downloadable offline): round 1 = 70 text tokens (causal system prompt, question,
answer), middle rounds 36, query prompt 25 (+ answer 14 when training). Weights are random (no download):
``--real`` builds CLIP ViT-L/14-224 + Linear(1024, 4096) + LLaMA-7B with vocab 32003 directly on the device.
The parameter count of the real architecture is always computed on the meta device and checked against
the released checkpoint's 6,742,638,592 (LLM + projector + 3 new token rows, spec §1).
Time: minimum over ``--repeats`` runs (least disturbed by other processes).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

try:
    from vlrepro.lcl.model import LCLConfig, LCLForCausalLM
except ImportError:  # run from a checkout without the workspace installed
    _root = Path(__file__).resolve().parents[3]
    sys.path[:0] = [str(_root / "packages/lcl/src"), str(_root / "shared/src")]
    from vlrepro.lcl.model import LCLConfig, LCLForCausalLM

RELEASED_PARAMS = 6_742_638_592  # LCL_2WAY_WEIGHT training log (issue #11): LLaMA-7B + 3 token rows + projector
TEXT_TOKENS = {"first": 70, "middle": 36, "query": 25, "answer": 14}


def shikra_config(real: bool) -> LCLConfig:
    """Shikra-7B (CLIP ViT-L/14 224 px -> 256 patches; LLaMA-7B; vocab 32000 + 3 image tokens), or a tiny one."""
    if real:
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
        llama = dict(vocab_size=32003, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=2048, rms_norm_eps=1e-6)
        tokens = (32000, 32001, 32002)
    else:
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                      image_size=32, patch_size=8, projection_dim=32)
        llama = dict(vocab_size=323, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048)
        tokens = (320, 321, 322)
    return LCLConfig(vision_config=vision, bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
                     im_patch_token=tokens[0], im_start_token=tokens[1], im_end_token=tokens[2], **llama)


def count_params(config: LCLConfig) -> dict:
    """Parameter counts of the architecture, built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        model = LCLForCausalLM(config)
    vision = sum(p.numel() for p in model.vision_tower.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "vision_tower": vision, "llm_plus_projector": total - vision,
            "projector": sum(p.numel() for p in model.model.mm_projector.parameters())}


def episode_ids(config: LCLConfig, shot: int, *, train: bool, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids [1, T] and labels [1, T] of one 2-way episode in the encode_rounds layout."""
    L, vocab_text = config.image_token_len, config.im_patch_token  # text ids below the image tokens
    block = [config.im_start_token] + [config.im_patch_token] * L + [config.im_end_token]

    def text(n: int) -> list[int]:
        return torch.randint(3, vocab_text, (n,), generator=generator).tolist()

    ids: list[int] = []
    n_rounds = 2 * shot + 1
    for i in range(n_rounds):
        last = i == n_rounds - 1
        n_text = TEXT_TOKENS["first"] if i == 0 else TEXT_TOKENS["query"] if last else TEXT_TOKENS["middle"]
        before = n_text // 2
        ids += [config.bos_token_id] + text(before) + block + text(n_text - before)
        if i == 0:
            ids.append(config.eos_token_id)  # round 1 keeps its </s>, middle rounds drop theirs
    labels = [-100] * len(ids)
    if train:
        answer = text(TEXT_TOKENS["answer"] - 1) + [config.eos_token_id]
        ids += answer
        labels += answer
    return torch.tensor([ids]), torch.tensor([labels])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak(device: str) -> int:
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def timed(fn, device: str, repeats: int) -> tuple[float, object]:
    """Minimum wall time over ``repeats`` runs after one untimed warm-up run."""
    fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best * 1000.0, out


def build_model(config: LCLConfig, device: str, dtype: torch.dtype) -> LCLForCausalLM:
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LCLForCausalLM(config)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def bench_shot(model: LCLForCausalLM, shot: int, args, dtype: torch.dtype) -> dict:
    cfg, dev = model.config, args.device
    g = torch.Generator().manual_seed(shot)
    n_img = 2 * shot + 1
    side = cfg.clip_vision_config.image_size
    images = torch.randn(n_img, 3, side, side, generator=g).to(dev, dtype)  # [S, 3, H, W]
    ids, _ = episode_ids(cfg, shot, train=False, generator=g)
    ids = ids.to(dev)
    mask = torch.ones_like(ids)
    row = {"shot_per_class": shot, "paper_n_shot": 2 * shot, "images": n_img, "prompt_tokens": int(ids.shape[1])}

    with torch.no_grad():
        _reset_peak(dev)
        row["prefill_ms"], _ = timed(lambda: model(input_ids=ids, attention_mask=mask, images=images, use_cache=True), dev, args.repeats)
        gen_ms, new = timed(lambda: model.greedy_generate(ids, mask, images, max_new_tokens=args.new_tokens,
                                                          eos_token_id=-1, pad_token_id=0), dev, args.repeats)
        row["peak_mem_eval_bytes"] = _peak(dev)
    assert new.shape == (1, args.new_tokens), new.shape  # EOS disabled: exactly new_tokens steps
    row["generate_ms"] = gen_ms
    row["new_tokens"] = args.new_tokens
    row["decode_ms_per_token"] = (gen_ms - row["prefill_ms"]) / max(args.new_tokens - 1, 1)

    if not args.no_train:
        tids, tlabels = episode_ids(cfg, shot, train=True, generator=g)
        tids, tlabels = tids.to(dev), tlabels.to(dev)
        model.train()
        model.gradient_checkpointing_enable()

        def step():
            model.zero_grad(set_to_none=True)
            out = model(input_ids=tids, attention_mask=torch.ones_like(tids), images=images, labels=tlabels, use_cache=False)
            out.loss.backward()
            return float(out.loss.detach())

        _reset_peak(dev)
        row["train_step_ms"], loss = timed(step, dev, args.repeats)
        row["peak_mem_train_bytes"] = _peak(dev)
        row["train_tokens"] = int(tids.shape[1])
        row["train_loss_finite"] = bool(torch.isfinite(torch.tensor(loss)))
        model.zero_grad(set_to_none=True)
        model.gradient_checkpointing_disable()
        model.eval()
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", action="store_true", help="Shikra-7B architecture (CLIP ViT-L/14 + LLaMA-7B), random weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None,
                    help="default: float16 on CUDA (the original's fp16 eval), float32 on CPU")
    ap.add_argument("--shots", default="1,2,4,8", help="support images per class (paper N-shot = 2 x shot)")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-train", action="store_true", help="skip the training-step measurement")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(json.dumps({"error": "--device cuda requested but CUDA is not available; use --device cpu"}), file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.float16 if args.device.startswith("cuda") else torch.float32)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True  # the original trains with tf32

    real_params = count_params(shikra_config(True))
    out = {
        "benchmark": "lcl_episode_cost", "real": args.real, "device": args.device, "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "real_architecture_params": {**real_params, "released_checkpoint": RELEASED_PARAMS,
                                     "matches_release": real_params["llm_plus_projector"] == RELEASED_PARAMS},
    }
    try:
        import transformers

        out["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    if args.real and not args.device.startswith("cuda"):
        out["note"] = "timings of the 7B architecture need --device cuda (27 GB of fp32 weights); parameter count only"
        print(json.dumps(out))
        return 0
    config = shikra_config(args.real)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    model = build_model(config, args.device, dtype)
    out["build_s"] = time.perf_counter() - t
    out["image_token_len"] = config.image_token_len
    out["weights_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    out["results"] = [bench_shot(model, int(s), args, dtype) for s in args.shots.split(",")]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
