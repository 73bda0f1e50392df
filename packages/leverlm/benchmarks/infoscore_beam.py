"""Benchmark: batched InfoScore beam search (what `generate` runs) vs a naive implementation that
runs one LVLM forward per candidate and re-encodes every image every time, on the same OpenFlamingo
and the same anchors / candidate sets (spec §1a: beam_size, few_shot_num, construct_order left).

Prints one JSON line: speedup_vs_naive, identical_sequences (the b stored sequences of every anchor
are the same) and max_abs_score_diff. Target: ≥3× with identical output.

    python packages/leverlm/benchmarks/infoscore_beam.py                         # tiny OpenFlamingo, CPU
    python packages/leverlm/benchmarks/infoscore_beam.py --device cuda --real    # OpenFlamingo-3B-sized, random weights
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch


def real_config() -> dict:
    """OpenFlamingo-3B-vitl-mpt1b sizes (ViT-L/14 at 224 px; a 24-layer, 2048-wide LM, x-attn every layer)."""
    return {
        "clip_embed_dim": 768,
        "vision_cfg": {"layers": 24, "width": 1024, "head_width": 64, "patch_size": 14, "image_size": 224},
        "text_cfg": {"context_length": 8, "vocab_size": 50, "width": 16, "heads": 2, "layers": 1},
        "lang_config": {"vocab_size": 50280, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
                        "num_attention_heads": 16, "max_position_embeddings": 2048, "bos_token_id": 1, "eos_token_id": 2,
                        "pad_token_id": 0, "tie_word_embeddings": False},
        "cross_attn_every_n_layers": 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--real", action="store_true", help="OpenFlamingo-3B-sized architecture with random weights (GPU)")
    ap.add_argument("--anchors", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=12, help="sampler candidate_num (the paper: 64)")
    ap.add_argument("--beam-size", type=int, default=3)
    ap.add_argument("--few-shot", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--order", default="left", choices=["left", "right"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16 is what generate uses on GPU; fp32 (TF32 off) makes the identity check meaningful on random weights")
    args = ap.parse_args()

    from transformers.utils import logging as hf_logging
    from vlrepro.leverlm.data import caption_rows
    from vlrepro.leverlm.lvlm import (
        FlamingoAdapter,
        _clip_tensor_transform,
        build_flamingo,
        build_tiny_flamingo,
        load_lvlm,
        tiny_tokenizer,
    )
    from vlrepro.leverlm.method import InfoScorer, beam_search
    from vlrepro.leverlm.retrieval import rand_candidates
    from vlrepro.shared.data import make_mini
    from vlrepro.shared.testing import tiny_clip_image_processor

    hf_logging.set_verbosity_error()
    tmp = Path(tempfile.mkdtemp(prefix="leverlm-bench-"))
    make_mini("coco2017", tmp / "data", seed=args.seed, n=max(32, args.candidates + args.anchors + 1))
    rows = caption_rows(2017, "train", tmp / "data" / "coco")
    device = torch.device(args.device)
    precision = args.precision if device.type == "cuda" else "fp32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(args.seed)
    if args.real:
        tok = tiny_tokenizer(tmp / "tok", "flamingo")
        cfg = real_config()
        with torch.device(device):
            model = build_flamingo(cfg, tok)
        model = model.to(torch.bfloat16 if precision == "bf16" else torch.float32)
        fast = FlamingoAdapter(model, tok, _clip_tensor_transform(tiny_clip_image_processor(224)), device, precision)
    else:
        from omegaconf import OmegaConf

        fast = load_lvlm(OmegaConf.create({"family": "flamingo", "model_path": str(build_tiny_flamingo(tmp / "lvlm", seed=args.seed))}),
                         device, precision)
    naive = FlamingoAdapter(fast.model, fast.tokenizer, fast.image_processor, device, precision)
    naive.cache = False  # re-preprocess and re-encode every image of every row, as the original does

    style = fast.style("caption")
    rng = random.Random(args.seed)
    anchors = list(range(args.anchors))
    cands = {a: rand_candidates(a, len(rows), args.candidates, rng) for a in anchors}

    def run(adapter, batch_size):
        scorer = InfoScorer(adapter, style, rows, batch_size=batch_size)
        scorer([anchors[0]], cands[anchors[0]][:2], args.order)  # warm-up (allocator, kernels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = [beam_search(a, cands[a], scorer, beam_size=args.beam_size, few_shot_num=args.few_shot, construct_order=args.order)
               for a in anchors]
        if device.type == "cuda":
            torch.cuda.synchronize()
        return res, time.perf_counter() - t0

    naive_res, naive_s = run(naive, 1)  # one forward per candidate (and per beam's base prompt)
    fast_res, fast_s = run(fast, args.batch_size)
    identical = all(a.id_list == b.id_list for a, b in zip(naive_res, fast_res, strict=False))
    agree = sum(x == y for a, b in zip(naive_res, fast_res, strict=False) for x, y in zip(a.id_list, b.id_list, strict=False)) / sum(len(a.id_list) for a in naive_res)
    diff = max(abs(x - y) for a, b in zip(naive_res, fast_res, strict=False) for x, y in zip(a.score_list, b.score_list, strict=False))
    speedup = naive_s / fast_s
    print(json.dumps({
        "benchmark": "infoscore_beam", "device": str(device), "arch": "openflamingo-3b-sized" if args.real else "tiny-openflamingo",
        "precision": precision, "anchors": args.anchors, "candidate_num": args.candidates, "beam_size": args.beam_size,
        "few_shot_num": args.few_shot, "batch_size": args.batch_size, "construct_order": args.order,
        "naive_s": round(naive_s, 3), "batched_s": round(fast_s, 3), "speedup_vs_naive": round(speedup, 2),
        "identical_sequences": identical, "sequence_agreement": round(agree, 4), "max_abs_score_diff": float(f"{diff:.3g}"),
        "target": "speedup_vs_naive >= 3 with identical_sequences", "meets_target": bool(identical and speedup >= 3),
    }))


if __name__ == "__main__":
    main()
