"""``vlrepro-lcl smoke``: the whole LCL pipeline on the embedded mini data with a tiny random model.

mini ImageNet/ISEKAI (official layout) -> tiny CLIP + tiny LLaMA of the real architecture, saved with
``save_pretrained`` and loaded back with ``from_pretrained`` -> episode training (accelerate loop,
loss on the final answer only) -> saved/reloaded again -> 2-way eval on ISEKAI-10 and ImageNet-100
with the LCL accuracy rule -> ``results.json``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from vlrepro.shared.results import write_results
from vlrepro.shared.testing import tiny_clip_image_processor, tiny_llama_tokenizer

from .data import EpisodeTensors, TrainEpisodes, load_eval_set, load_train_classes, make_mini_data
from .model import add_image_tokens, build_tiny_model, load_lcl
from .runs import evaluate_sets, resolve_device
from .train import TrainArgs, seed_everything, train_model


def build_tiny_checkpoint(out: Path, *, image_size: int = 32, patch_size: int = 8, seed: int = 0) -> Path:
    """Tokenizer (+3 image tokens), tiny model and CLIP image processor saved to ``out`` as one checkpoint."""
    tokenizer = tiny_llama_tokenizer(out / "tokenizer")
    add_image_tokens(tokenizer)
    model = build_tiny_model(tokenizer, image_size=image_size, patch_size=patch_size, seed=seed)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    tiny_clip_image_processor(image_size).save_pretrained(out)
    return out


def run_smoke(cfg: DictConfig) -> int:
    t0 = time.time()
    device = resolve_device(cfg.device)
    seed_everything(int(cfg.seed))
    out = Path(cfg.out_dir) if cfg.out_dir else Path(tempfile.mkdtemp(prefix="vlrepro-lcl-smoke-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"[smoke] output folder {out}")

    data = make_mini_data(out / "data", seed=int(cfg.seed))
    print(f"[smoke] mini ImageNet + ISEKAI data in {data} ({time.time() - t0:.1f}s)")

    init = build_tiny_checkpoint(out / "init", image_size=cfg.tiny.image_size, patch_size=cfg.tiny.patch_size, seed=int(cfg.seed))
    model, tokenizer, processor = load_lcl(init)  # the real from_pretrained path
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[smoke] tiny {model.config.model_type} model ({n_params} params, {model.config.image_token_len} patch tokens/image) "
          f"saved and reloaded from {init}")

    classes = load_train_classes(data / "imagenet")
    tt = EpisodeTensors(tokenizer, processor, model.config.image_token_len, data / "imagenet", dataset="imagenet")
    episodes = TrainEpisodes(classes, tt, shot=int(cfg.data_args.shot), policy=str(cfg.data_args.policy), seed=int(cfg.seed))
    targs = OmegaConf.to_container(cfg.training_args, resolve=True)
    args = TrainArgs.from_cfg({**targs, "output_dir": str(out / "train"), "seed": int(cfg.seed)})
    summary = train_model(model.to(device), tokenizer, episodes, args, device=device)
    print(f"[smoke] trained {summary.train_steps} steps on {len(classes)} ImageNet classes: "
          f"loss {summary.train_loss_first:.4f} -> {summary.train_loss_last:.4f} ({time.time() - t0:.1f}s)")

    final = out / "model"
    model.save_pretrained(final, safe_serialization=True)
    tokenizer.save_pretrained(final)
    processor.save_pretrained(final)
    model, tokenizer, processor = load_lcl(final)

    files = {"ISEKAI_10": ("isekai", data / "isekai" / "ISEKAI-10.json"),
             "ISEKAI_PAIR": ("isekai", data / "isekai" / "ISEKAI-pair.json"),
             "ImageNet1k_test100": ("imagenet100", data / "imagenet" / "test100_pairs.jsonl")}
    sets = {}
    for key in cfg.eval.sets:
        kind, path = files[key]
        rows, root = load_eval_set(kind, path, None)
        sets[key] = (kind, rows, root, {"sample_per_class": 0})
    results = evaluate_sets(
        model, tokenizer, processor, sets, shots=[int(cfg.data_args.shot)], seed=int(cfg.seed),
        batch_size=int(cfg.eval.per_device_eval_batch_size), max_new_tokens=int(cfg.eval.max_new_tokens),
        device=device, output_dir=out, model_name="tiny-random-lcl-shikra", config=OmegaConf.to_container(cfg, resolve=True),
        train=summary.as_row(),
    )
    path = write_results(out, results)
    print(f"[smoke] wrote {path} ({time.time() - t0:.1f}s)")
    return 0
