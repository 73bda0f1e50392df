"""Training (spec §3): the original's torchrun/DDP loop with its schedule, optimizer and checkpoints.

* Launch: ``torchrun --nproc_per_node 8 --no-python vlrepro-ademvl train …`` (env:// rendezvous:
  ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``); without ``WORLD_SIZE`` a plain single process runs.
  DDP uses ``find_unused_parameters=True`` because the last CLIP block's adapter never runs.
* Effective LR: ``lr = blr · batch_size · accum_iter · world_size / 256`` unless ``lr`` is given
  (9e-3 · 32 / 256 = 1.125e-3 for the README runs).
* Schedule per iteration from a fractional epoch: linear warmup over ``warmup_epochs``, then a
  half-cycle cosine to ``min_lr`` at ``epochs``; set at every accumulation boundary.
* AdamW(β = 0.9, 0.95); weight decay 0 for 1-d tensors and biases (timm's ``param_groups_weight_decay``).
* fp16 frozen weights with a GradScaler on CUDA; fp32 on CPU. Non-finite losses are skipped.
* Checkpoints per epoch: ``checkpoint-{epoch}.safetensors`` (the adapter weights) and
  ``checkpoint-{epoch}.state.pt`` (optimizer, scaler, epoch; read back with ``weights_only=True``).
  ``resume=true`` continues from the newest pair in ``out_dir``; ``resume=<file>`` from that one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from vlrepro.shared.atomic import write_atomic
from vlrepro.shared.data import load_karpathy, load_scienceqa
from vlrepro.shared.errors import VlreproError

from .build import create_model, plain_config, resolve_device, scienceqa_root
from .data import (
    CLIP_MEAN,
    CLIP_STD,
    TrainSet,
    caption_examples,
    collate,
    instruction_examples,
    sqa_examples,
    with_captions,
)
from .method import ADEMVL, count_trainable


# ----------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def effective_lr(cfg: DictConfig, world_size: int) -> float:
    """``lr`` if given, else ``blr · batch_size · accum_iter · world_size / 256`` (the original's rule)."""
    if cfg.get("lr") is not None:
        return float(cfg.lr)
    return float(cfg.blr) * int(cfg.batch_size) * int(cfg.accum_iter) * world_size / 256


def lr_at(epoch: float, *, base_lr: float, min_lr: float, warmup_epochs: float, epochs: float) -> float:
    """Linear warmup from 0, then half-cycle cosine to ``min_lr`` (MAE's ``adjust_learning_rate``)."""
    if epoch < warmup_epochs:
        return base_lr * epoch / warmup_epochs
    span = max(epochs - warmup_epochs, 1e-12)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / span))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters: no decay for ndim ≤ 1 and ``.bias``; ``weight_decay`` for the rest (E₁, E₂, matrices)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def init_distributed() -> tuple[int, int]:
    """(rank, world_size); initialises torch.distributed when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, init_method="env://")
    return dist.get_rank(), dist.get_world_size()


# ----------------------------------------------------------------------------- data
def build_train_set(cfg: DictConfig, model: ADEMVL, *, seed: int) -> Dataset:
    """The ``dataset`` of the config: ``sqa``, ``coco_caption`` or ``instruction`` (spec §4)."""
    size = model.clip.image_size
    tok = model.tokenizer
    name = str(cfg.dataset)
    if name == "sqa":
        root = scienceqa_root(cfg)
        records = load_scienceqa(str(cfg.get("train_split", "train")), root=root, captions=cfg.caption_file is None)
        records = with_captions(records, cfg.caption_file)
        examples = sqa_examples(records, str(cfg.prompt_format), bool(cfg.use_caption))
        return TrainSet(examples, tok, max_words=int(cfg.max_seq_len), image_size=size, seed=seed)
    if name == "coco_caption":
        items = caption_train_items(cfg)
        # the original's caption set truncates to 30 tokens (max_words=30) whatever max_seq_len is
        return TrainSet(caption_examples(items), tok, max_words=int(cfg.get("caption_max_words", 30)), image_size=size,
                        mean=CLIP_MEAN, std=CLIP_STD, augment=True, seed=seed)
    if name == "instruction":
        root = Path(str(cfg.data_root)) if cfg.get("data_root") else dataset_dir_llava()
        examples = instruction_examples(root / "all_data.json", root)
        return TrainSet(examples, tok, max_words=int(cfg.max_seq_len), image_size=size, seed=seed)
    raise VlreproError(f"unknown dataset {name!r}", fix="use dataset=sqa, coco_caption or instruction")


def dataset_dir_llava() -> Path:
    from vlrepro.shared.paths import dataset_dir

    return dataset_dir("llava")


def caption_train_items(cfg: DictConfig) -> list[tuple[Path, str]]:
    """(image, caption) pairs: BLIP's ``coco_karpathy_train.json`` under ``<data_root>/coco_caption`` if
    ``data_root`` is set (images under ``<data_root>/images``), else Karpathy's ``dataset_coco.json``."""
    if cfg.get("data_root"):
        root = Path(str(cfg.data_root))
        from vlrepro.shared.errors import read_json

        rows = read_json(root / "coco_caption" / "coco_karpathy_train.json", what="BLIP Karpathy train file",
                         fix="download coco_karpathy_train.json from BLIP's release into <data_root>/coco_caption/")
        return [(root / "images" / r["image"], str(r["caption"])) for r in rows]
    records = load_karpathy(split="train")
    return [(r.image_path, c) for r in records for c in r.captions]


# ----------------------------------------------------------------------------- checkpoints
_CKPT = re.compile(r"^checkpoint-(\d+)\.state\.pt$")


def save_checkpoint(out_dir: Path, epoch: int, model: ADEMVL, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None, step: int, cfg: DictConfig, extra: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    weights = out_dir / f"checkpoint-{epoch}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.adapter_state_dict().items()}
    write_atomic(weights, lambda tmp: save_file(state, tmp, metadata={"epoch": str(epoch)}))
    meta = {"optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
            "scaler": scaler.state_dict() if scaler is not None else {},
            "args": json.dumps(plain_config(cfg)), "extra": json.dumps(extra)}
    write_atomic(out_dir / f"checkpoint-{epoch}.state.pt", lambda tmp: torch.save(meta, tmp))
    return weights


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = [(int(m.group(1)), p) for p in out_dir.glob("checkpoint-*.state.pt") if (m := _CKPT.match(p.name))]
    return max(found)[1] if found else None


def load_adapter_file(path: Path) -> dict[str, torch.Tensor]:
    """Adapter weights from our ``.safetensors`` or an original ``checkpoint-*.pth`` (``{'model': …}``)."""
    if not path.is_file():
        raise VlreproError(f"adapter checkpoint not found: {path}", fix="pass adapter_path=<run dir or checkpoint file>")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import argparse

    torch.serialization.add_safe_globals([argparse.Namespace])  # the original stores its argparse args
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unreadable pickle = bad user file
        raise VlreproError(f"cannot read adapter checkpoint {path} ({type(e).__name__}: {str(e)[:120]})") from None
    return obj["model"] if isinstance(obj, dict) and "model" in obj else obj


# ----------------------------------------------------------------------------- the loop
def train(cfg: DictConfig, *, model: ADEMVL | None = None, log=print) -> dict[str, Any]:
    """Train the adapters; returns a summary (steps, first/last epoch-mean loss, paths)."""
    rank, world = init_distributed()
    seed = int(cfg.seed) + rank
    seed_everything(seed)
    device = resolve_device(cfg)
    out_dir = Path(str(cfg.out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = create_model(cfg, device)
    dataset = build_train_set(cfg, model, seed=seed)
    batch_size, accum = int(cfg.batch_size), int(cfg.accum_iter)
    if len(dataset) < batch_size * world:
        raise VlreproError(f"{len(dataset)} training examples cannot fill one batch of {batch_size} on {world} process(es)")
    if world > 1:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=int(cfg.seed))
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=int(cfg.num_workers),
                        collate_fn=collate, drop_last=True, pin_memory=device.type == "cuda")
    base_lr = effective_lr(cfg, world)
    optimizer = torch.optim.AdamW(param_groups(model, float(cfg.weight_decay)), lr=base_lr, betas=(0.9, 0.95))
    use_scaler = device.type == "cuda" and next(model.llama.parameters()).dtype == torch.float16
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    start_epoch, step = 0, 0
    resume = _resume_path(cfg, out_dir)
    if resume is not None:
        meta = torch.load(resume, map_location="cpu", weights_only=True)
        weights = resume.with_name(resume.name.replace(".state.pt", ".safetensors"))
        model.load_adapter_state_dict(load_adapter_file(weights))
        optimizer.load_state_dict(meta["optimizer"])
        if scaler is not None and meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        start_epoch, step = int(meta["epoch"]) + 1, int(meta["step"])
        log(f"resumed from {resume} (next epoch {start_epoch})")
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    if rank == 0:
        log(f"trainable parameters: {count_trainable(model):,}; effective batch {batch_size * accum * world}; "
            f"lr {base_lr:.3e}; {len(dataset)} examples, {len(loader)} iterations/epoch")
    epochs, max_steps = int(cfg.epochs), cfg.get("max_steps")
    epoch_means: list[float] = []
    metrics_path, log_path = out_dir / "metrics.csv", out_dir / "log.txt"
    from tqdm import tqdm

    model.train()
    optimizer.zero_grad(set_to_none=True)
    done = False
    for epoch in range(start_epoch, epochs):
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        if hasattr(dataset, "epoch"):
            dataset.epoch = epoch
        losses: list[float] = []
        bar = tqdm(loader, desc=f"epoch {epoch}", disable=rank != 0 or not cfg.get("progress", True), leave=False)
        for it, batch in enumerate(bar):
            if it % accum == 0:
                lr = lr_at(it / len(loader) + epoch, base_lr=base_lr, min_lr=float(cfg.min_lr),
                           warmup_epochs=float(cfg.warmup_epochs), epochs=epochs)
                for g in optimizer.param_groups:
                    g["lr"] = lr
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_scaler):
                loss = net(batch["example"], batch["labels"], batch["image"], batch["indicator"])
            value = float(loss.detach())
            # the original replaces a NaN loss by 0 and still steps (momentum, weight decay); we skip the batch,
            # and the optimizer step too when it falls on an accumulation boundary (README, deviations)
            if not math.isfinite(value):
                log(f"non-finite loss at epoch {epoch} iteration {it}; skipped")
                continue
            scaled = loss / accum
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
            losses.append(value)
            if (it + 1) % accum == 0:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if cfg.get("clip_grad") is not None:
                    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], float(cfg.clip_grad))
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if rank == 0:
                    bar.set_postfix(loss=f"{value:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                    _append_csv(metrics_path, {"epoch": epoch, "step": step, "loss": value,
                                               "lr": optimizer.param_groups[0]["lr"], "time": time.time()})
                if max_steps is not None and step >= int(max_steps):
                    done = True
                    break
        mean = sum(losses) / max(len(losses), 1)
        epoch_means.append(mean)
        if rank == 0:
            log(f"epoch {epoch}: mean loss {mean:.4f} over {len(losses)} iterations (step {step})")
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"epoch": epoch, "train_loss": mean, "train_lr": optimizer.param_groups[0]["lr"],
                                    "step": step}) + "\n")
            save_checkpoint(out_dir, epoch, model, optimizer, scaler, step, cfg, {"epoch_means": epoch_means})
        if done:
            break
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return {"train_steps": step, "train_loss_first": epoch_means[0] if epoch_means else float("nan"),
            "train_loss_last": epoch_means[-1] if epoch_means else float("nan"), "epoch_losses": epoch_means,
            "lr": base_lr, "world_size": world, "rank": rank, "model": model}


def _resume_path(cfg: DictConfig, out_dir: Path) -> Path | None:
    r = cfg.get("resume")
    if r in (None, False, "", "false", "False"):
        return None
    if r is True or str(r).lower() == "true":
        return latest_checkpoint(out_dir)
    p = Path(str(r))
    if p.suffix == ".safetensors":
        p = p.with_name(p.name.replace(".safetensors", ".state.pt"))
    if not p.is_file():
        raise VlreproError(f"resume checkpoint not found: {p}", fix="pass resume=true or resume=<checkpoint-N.state.pt>")
    return p


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def run_train(cfg: DictConfig) -> int:
    """The ``train`` verb."""
    summary = train(cfg)
    if summary["rank"] == 0:
        print(json.dumps({k: v for k, v in summary.items() if k not in ("model",)}))
    return 0


def iter_batches(items: Iterable[Any], n: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for it in items:
        batch.append(it)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
