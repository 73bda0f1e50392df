"""``vlrepro-ademvl smoke``: the whole pipeline on generated data with a tiny model of the real architecture.

1. ``make_mini("scienceqa")`` writes problems.json / pid_splits.json / captions.json / images/ (official layout).
2. A tiny CLIP (``vlrepro.shared.testing``) is saved with ``save_pretrained``; a tiny LLaMA is written as
   Meta does (``tokenizer.model`` + ``tiny/params.json`` + ``tiny/consolidated.00.pth``).
3. Both load back through the real loaders (``CLIPVisionModel.from_pretrained``, :func:`load_llama`),
   ADEM-VL's adapters are added and trained with the real loop (lower loss asserted by the contract).
4. A fresh model loads the adapter checkpoint and runs the ScienceQA evaluation; ``results.json``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from vlrepro.shared.results import write_results

from .evaluate import _row, evaluate
from .llama import ModelArgs, Transformer, save_meta_checkpoint
from .train import train


def init_tiny_llama(model: Transformer, seed: int) -> None:
    """LLaMA-style small-normal init (std 0.02), except the LM head (``output``), std ``d^-1/2``.

    The head stays frozen under ADEM-VL, and the final RMSNorm fixes ``|h| = √d``, so the largest
    logit any hidden state can reach is about ``std · d``: 1.3 for std 0.02 at d = 64, which caps a
    320-way softmax at p ≈ 0.01 (loss ≥ ~4.5) whatever the adapters learn. A pretrained LLaMA's head
    reaches logits of 10-20; std ``d^-1/2`` (logit std 1 at init, reachable logit ≈ √d = 8) gives the
    tiny model a head that can express a confident prediction too.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name == "output.weight":
                p.copy_(torch.randn(p.shape, generator=g) * p.shape[1] ** -0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def write_tiny_weights(weights: Path, cfg: DictConfig) -> None:
    """``weights/tokenizer.model``, ``weights/<llm_model>/{params.json, consolidated.00.pth}`` and ``weights/clip``."""
    from sentencepiece import SentencePieceProcessor
    from vlrepro.shared import testing

    weights.mkdir(parents=True, exist_ok=True)
    sp_bytes = testing.sentencepiece_model()
    (weights / "tokenizer.model").write_bytes(sp_bytes)
    vocab = SentencePieceProcessor(model_proto=sp_bytes).vocab_size()
    args = ModelArgs(dim=int(cfg.tiny_dim), n_layers=int(cfg.tiny_layers), n_heads=int(cfg.tiny_heads),
                     multiple_of=int(cfg.tiny_multiple_of), norm_eps=1e-6, vocab_size=vocab,
                     max_seq_len=int(cfg.max_seq_len))
    llama = Transformer(args)
    init_tiny_llama(llama, int(cfg.seed))
    save_meta_checkpoint(llama, weights / str(cfg.llm_model))
    testing.tiny_clip_model(weights / "clip", seed=int(cfg.seed))


def run_smoke(cfg: DictConfig) -> int:
    t0 = time.time()
    out = Path(str(cfg.out_dir)) if cfg.out_dir else Path(tempfile.mkdtemp(prefix="ademvl-smoke-"))
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[smoke {time.time() - t0:5.1f}s] {msg}", flush=True)

    from vlrepro.shared.data import make_mini

    make_mini("scienceqa", out / "data", seed=int(cfg.seed), n=int(cfg.smoke_n))
    log(f"mini ScienceQA written to {out / 'data' / 'scienceqa'}")
    torch.manual_seed(int(cfg.seed))
    write_tiny_weights(out / "weights", cfg)
    log(f"tiny Meta-format LLaMA + tiny CLIP written to {out / 'weights'}")

    base: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    base.update(data_root=str(out / "data" / "scienceqa"), llama_model_path=str(out / "weights"),
                clip_root=str(out / "weights" / "clip"), caption_file=None)
    train_cfg = OmegaConf.create({**base, "out_dir": str(out / "run")})
    summary = train(train_cfg, log=log)
    log(f"trained {summary['train_steps']} steps: epoch-mean loss {summary['train_loss_first']:.4f} -> "
        f"{summary['train_loss_last']:.4f}")

    eval_cfg = OmegaConf.create({**base, "out_dir": str(out / "eval"), "batch_size": int(cfg.eval_batch_size),
                                 "adapter_path": str(out / "run"), "checkpoint": None})
    rows = evaluate(eval_cfg, log=log)  # a fresh model from the files + the newest adapter checkpoint
    train_info = {k: summary[k] for k in ("train_steps", "train_loss_first", "train_loss_last")}
    rows = [_row_with_train(r, train_info) for r in rows]
    path = write_results(out, rows)
    acc = rows[0]["value"]
    log(f"ScienceQA (mini test, {rows[0]['n']} problems) accuracy {acc:.2f}; wrote {path}")
    return 0


def _row_with_train(row: dict[str, Any], train_info: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row.update(train_info)
    row["model"] = "ADEM-VL tiny (random LLaMA + CLIP)"
    return row


__all__ = ["run_smoke", "write_tiny_weights", "init_tiny_llama", "_row"]
