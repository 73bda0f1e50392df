"""``vlrepro-sophon smoke``: the whole SQ-LLaVA pipeline on a tiny model and the mini data sets.

1. ``make_mini("llava")`` (pretrain + instruction JSON, official layout) and ``make_mini("coco2017")``;
2. a tiny Llama ("Vicuna") and a tiny CLIP, randomly initialised, saved with ``save_pretrained``;
3. ``pretrain``: they are loaded back through the real path (``build_from_base``) and the
   ``cluster`` projector alone is trained on the ``plain`` template -> ``mm_projector.safetensors``;
4. ``finetune``: LoRA + projector with the ``v1_sq`` template (sq_r 0.5) -> adapters +
   ``non_lora_trainables``;
5. ``eval``: the stage-2 folder is loaded like a release (base + non-LoRA + merged LoRA),
   greedy captions on the mini COCO val, BLEU/CIDEr -> ``results.json``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from vlrepro.shared.paper_cli import compose


def _stage_cfg(name: str, smoke: DictConfig, extra: dict) -> DictConfig:
    cfg = compose("vlrepro.sophon.configs", name, [])
    OmegaConf.set_struct(cfg, False)
    merged = OmegaConf.merge(cfg, smoke.common if name != "eval" else {}, smoke.get(name, {}), extra)
    return merged


def sq_tokenizer(out_dir: Path, texts: list[str], vocab_size: int = 1000):
    """A LLaMA-style SentencePiece BPE tokenizer trained on the shared tiny corpus + the SQ templates + ``texts``.

    The shared tiny tokenizer (320 pieces) spells the long ``v1_sq`` system prompt byte by byte
    (~600 tokens), which makes tiny training 4x slower; this one keeps LLaMA's settings (byte
    fallback, unk/bos/eos = 0/1/2, dummy prefix, no whitespace folding) and learns those words.
    """
    import io

    import sentencepiece as spm
    from transformers import AutoTokenizer, LlamaTokenizer
    from vlrepro.shared import testing

    from .conversation import SQ_SYSTEM

    lines = testing._corpus_lines() + [SQ_SYSTEM, "USER: ASSISTANT: VUSER: </s>"] * 8 + texts
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=vocab_size,
                                   byte_fallback=True, character_coverage=1.0, split_digits=True, add_dummy_prefix=True,
                                   remove_extra_whitespaces=False, normalization_rule_name="identity",
                                   allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   num_threads=1, minloglevel=2, hard_vocab_limit=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.model").write_bytes(buf.getvalue())
    tok = LlamaTokenizer(vocab_file=str(out_dir / "tokenizer.model"), legacy=True)
    tok.pad_token = tok.unk_token
    tok.save_pretrained(out_dir)
    return AutoTokenizer.from_pretrained(out_dir, use_fast=False)


def _data_texts(data: Path) -> list[str]:
    import json

    texts = []
    for name in ("blip_laion_cc_sbu_558k.json", "llava_v1_5_mix665k.json"):
        for item in json.loads((data / "llava" / name).read_text(encoding="utf-8")):
            texts += [t["value"].replace("<image>", "") for t in item["conversations"]]
    return texts


def warm_language_model(llm, tok, texts: list[str], *, steps: int, lr: float = 3e-3, batch_size: int = 32, seed: int = 0) -> None:
    """Train the tiny "Vicuna" as a plain language model on the mini data's text (a stand-in for Vicuna's pretraining).

    A random Llama with a frozen lm_head (init std 0.02) and RMS-normalised hidden states cannot move its
    logits by more than about +-1.3, so LoRA on it cannot learn anything visible; the real recipe starts
    from a pretrained LLM. No image is seen here: the image-conditioned part is left to the two stages.
    """
    if steps <= 0 or not texts:
        return
    import random

    rng = random.Random(seed)
    seqs = [[tok.bos_token_id] + tok(t, add_special_tokens=False).input_ids[:62] + [tok.eos_token_id] for t in texts if t.strip()]
    opt = torch.optim.AdamW(llm.parameters(), lr=lr, weight_decay=0.0)
    llm.train()
    for _ in range(steps):
        batch = rng.sample(seqs, min(batch_size, len(seqs)))
        n = max(len(x) for x in batch)
        ids = torch.full((len(batch), n), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        for k, x in enumerate(batch):
            ids[k, :len(x)] = torch.tensor(x)
            labels[k, :len(x)] = torch.tensor(x)
        loss = llm(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    llm.eval()
    print(f"[smoke] tiny LLM warmed up as a language model on the data text: {steps} steps, loss {loss.item():.3f}", flush=True)


def make_tiny_base(out: Path, smoke: DictConfig, texts: list[str]) -> tuple[Path, Path]:
    """Save a tiny random Llama + tokenizer (the "Vicuna") and a tiny random CLIP + processor."""
    from transformers import LlamaForCausalLM
    from vlrepro.shared.testing import tiny_clip_model, tiny_llama_config

    llm_dir, clip_dir = out / "vicuna-tiny", out / "clip-tiny"
    tok = sq_tokenizer(llm_dir, texts, vocab_size=int(smoke.tiny.vocab_size))
    torch.manual_seed(int(smoke.seed))
    cfg = tiny_llama_config(len(tok), hidden_size=int(smoke.tiny.hidden_size), intermediate_size=int(smoke.tiny.intermediate_size),
                            num_hidden_layers=int(smoke.tiny.num_hidden_layers), num_attention_heads=4, num_key_value_heads=4,
                            max_position_embeddings=2048)
    llm = LlamaForCausalLM(cfg)
    warm_language_model(llm, tok, texts, steps=int(smoke.tiny.get("lm_warmup_steps", 0)), seed=int(smoke.seed))
    llm.save_pretrained(llm_dir, safe_serialization=True)
    tiny_clip_model(clip_dir, seed=int(smoke.seed), image_size=int(smoke.tiny.image_size))
    return llm_dir, clip_dir


def run_smoke(smoke: DictConfig) -> list[dict]:
    from vlrepro.shared.data import make_mini

    from .evaluate import run_eval
    from .train import run_train

    t0 = time.time()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    out = Path(smoke.out_dir) if smoke.out_dir else Path(tempfile.mkdtemp(prefix="sophon-smoke-"))
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    make_mini("llava", data, seed=int(smoke.seed), n=int(smoke.n_items))
    make_mini("coco2017", data, seed=int(smoke.seed), n=int(smoke.n_items))
    print(f"[smoke] mini data in {data} ({time.time() - t0:.1f}s)", flush=True)
    llm_dir, clip_dir = make_tiny_base(out / "base", smoke, _data_texts(data))
    print(f"[smoke] tiny Llama in {llm_dir}, tiny CLIP in {clip_dir}", flush=True)
    base = dict(device=smoke.device, seed=int(smoke.seed), model_name_or_path=str(llm_dir), vision_tower=str(clip_dir),
                data_root=str(data / "llava"))
    pre = run_train(_stage_cfg("pretrain", smoke, dict(base, out_dir=str(out / "pretrain"))))
    fin = run_train(_stage_cfg("finetune", smoke, dict(base, out_dir=str(out / "finetune"),
                                                       pretrain_mm_mlp_adapter=str(out / "pretrain" / "mm_projector.safetensors"))))
    train = {"train_steps": fin["train_steps"], "train_loss_first": fin["train_loss_first"], "train_loss_last": fin["train_loss_last"],
             "pretrain_steps": pre["train_steps"], "pretrain_loss_first": pre["train_loss_first"],
             "pretrain_loss_last": pre["train_loss_last"], "vit_lora_B_norm": fin.get("vit_lora_B_norm")}
    eval_cfg = _stage_cfg("eval", smoke, dict(device=smoke.device, seed=int(smoke.seed), out_dir=str(out),
                                              model_path=str(out / "finetune"), model_base=str(llm_dir),
                                              coco_root=str(data / "coco"), model_id="sq-llava-tiny", train_summary=train))
    rows = run_eval(eval_cfg)
    if fin.get("vit_lora_B_norm") is not None and not fin["vit_lora_B_norm"] > 0:
        print("[smoke] WARNING: ViT-LoRA did not train (all lora_B are still zero)")
    for stage, s in (("pretrain", pre), ("finetune", fin)):
        if not s["train_loss_last"] < s["train_loss_first"]:
            print(f"[smoke] WARNING: {stage} loss did not go down ({s['train_loss_first']:.4f} -> {s['train_loss_last']:.4f})")
    print(f"[smoke] wrote {out / 'results.json'} in {time.time() - t0:.1f}s", flush=True)
    return rows


def smoke_verb(cfg: DictConfig) -> int:
    run_smoke(cfg)
    return 0
