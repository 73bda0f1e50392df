"""Fine-tuning on link-context episodes with accelerate (spec §2.6): cosine lr, warmup, bf16, FSDP, resume.

The original ran HF ``Seq2SeqTrainer`` under ``accelerate launch`` with FSDP full-shard wrapping
``LlamaDecoderLayer`` (and ``use_orig_params=True`` because the CLIP side is frozen). This loop keeps
those knobs under their ``training_args.*`` names; on CPU, FSDP and bf16 are ignored with a note.
Checkpoints: ``output_dir/checkpoint-<step>/`` = model safetensors + tokenizer + optimizer/scheduler
state (``torch.load(weights_only=True)``) + ``trainer_state.json``; ``resume=true`` continues from
the newest one.
"""

from __future__ import annotations

import csv
import json
import math
import random
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler
from vlrepro.shared.atomic import write_atomic, write_json_atomic

from .data import collate


@dataclass
class TrainArgs:
    """The subset of HF ``TrainingArguments`` the LCL configs set (same names)."""

    output_dir: str = "runs/lcl_train"
    learning_rate: float = 2e-5
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    num_train_epochs: float = 50
    max_steps: int = -1
    seed: int = 42
    bf16: bool = True
    tf32: bool = True
    gradient_checkpointing: bool = True
    fsdp: str = "full_shard auto_wrap"
    fsdp_transformer_layer_cls_to_wrap: str = "LlamaDecoderLayer"
    save_steps: int = 500
    save_total_limit: int = 1
    logging_steps: int = 1
    dataloader_num_workers: int = 4
    max_grad_norm: float = 1.0
    resume: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_cfg(cls, cfg: dict[str, Any]) -> TrainArgs:
        known = {k: v for k, v in cfg.items() if k in cls.__dataclass_fields__ and k != "extra"}
        return cls(**known, extra={k: v for k, v in cfg.items() if k not in cls.__dataclass_fields__})


@dataclass
class TrainSummary:
    train_steps: int
    train_loss_first: float
    train_loss_last: float
    losses: list[float]

    def as_row(self) -> dict[str, Any]:
        return {"train_steps": self.train_steps, "train_loss_first": self.train_loss_first,
                "train_loss_last": self.train_loss_last}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fsdp_plugin_kwargs(args: TrainArgs) -> dict[str, Any] | None:
    """``FullyShardedDataParallelPlugin`` arguments for the original's ``fsdp="full_shard auto_wrap"``.

    FULL_SHARD, transformer-based auto wrap of ``fsdp_transformer_layer_cls_to_wrap``
    (``LlamaDecoderLayer``), ``use_orig_params=True`` (the original patched FSDP to force it: the
    frozen CLIP tower mixes requires_grad=False parameters into wrapped units), full state dicts
    gathered for saving. ``None`` when ``fsdp`` does not ask for full sharding.
    """
    opts = (args.fsdp or "").split()
    if "full_shard" not in opts:
        if opts:
            raise ValueError(f"training_args.fsdp={args.fsdp!r}: only 'full_shard [auto_wrap]' (the original's) is supported")
        return None
    return {
        "sharding_strategy": "FULL_SHARD",
        "use_orig_params": True,
        "auto_wrap_policy": "transformer_based_wrap" if "auto_wrap" in opts else "no_wrap",
        "transformer_cls_names_to_wrap": [args.fsdp_transformer_layer_cls_to_wrap],
        "state_dict_type": "FULL_STATE_DICT",
    }


def _accelerator(args: TrainArgs, device: str):
    """An ``Accelerator`` honouring device, bf16 and FSDP full-shard where they make sense."""
    from accelerate import Accelerator

    on_gpu = device.startswith("cuda") and torch.cuda.is_available()
    plugin = None
    kwargs = fsdp_plugin_kwargs(args)
    if on_gpu and kwargs and torch.distributed.is_available() and _world_size() > 1:
        from accelerate import FullyShardedDataParallelPlugin

        plugin = FullyShardedDataParallelPlugin(**kwargs)
    elif args.fsdp and not on_gpu:
        print(f"[lcl] training_args.fsdp={args.fsdp!r} ignored: FSDP needs CUDA and several processes; training plainly on {device}")
    if on_gpu and args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    precision = "bf16" if (args.bf16 and on_gpu) else "no"
    return Accelerator(cpu=not on_gpu, mixed_precision=precision, fsdp_plugin=plugin,
                       gradient_accumulation_steps=args.gradient_accumulation_steps)


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = sorted(Path(output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return ckpts[-1] if ckpts else None


def save_checkpoint(model, tokenizer, optimizer, scheduler, state: dict, output_dir: Path, limit: int,
                    state_dict: dict | None = None) -> Path:
    """Model as safetensors (save_pretrained), optimizer/scheduler via torch.save, state JSON last (marks completeness).

    ``state_dict``: the full (gathered) weights under FSDP (``Accelerator.get_state_dict``)."""
    ckpt = output_dir / f"checkpoint-{state['step']}"
    model.save_pretrained(ckpt, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(ckpt)
    write_atomic(ckpt / "optimizer.pt", lambda tmp: torch.save(optimizer.state_dict(), tmp))
    write_atomic(ckpt / "scheduler.pt", lambda tmp: torch.save(scheduler.state_dict(), tmp))
    write_json_atomic(ckpt / "trainer_state.json", state)
    if limit and limit > 0:
        olds = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))[:-limit]
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)
    return ckpt


def train_model(model, tokenizer, dataset, args: TrainArgs, *, device: str = "cpu", progress: bool = True,
                final_dir: str | Path | None = None) -> TrainSummary:
    """Train ``model`` on ``dataset`` (episodes); loss = CE on the final answer only (labels do the masking).

    ``final_dir``: where the trained weights (+ tokenizer) are saved, gathered from all ranks under FSDP.
    """
    from safetensors.torch import load_file

    seed_everything(args.seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    acc = _accelerator(args, device)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.config.use_cache = False
    gen = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(dataset, batch_size=args.per_device_train_batch_size, shuffle=True, generator=gen,
                        num_workers=args.dataloader_num_workers,
                        collate_fn=partial(collate, pad_id=tokenizer.pad_token_id or 0, left_pad=False))
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    total = args.max_steps if args.max_steps and args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=math.ceil(args.warmup_ratio * total),
                              num_training_steps=total)
    step, losses = 0, []
    ckpt = latest_checkpoint(out) if args.resume else None
    if ckpt is not None and (ckpt / "trainer_state.json").is_file():
        state = json.loads((ckpt / "trainer_state.json").read_text())
        model.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=False)
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
        step, losses = int(state["step"]), list(state["losses"])
        print(f"[lcl] resumed from {ckpt} at step {step}")
    model, optimizer, loader, scheduler = acc.prepare(model, optimizer, loader, scheduler)
    model.train()
    bar = tqdm(total=total, initial=step, desc="train", disable=not progress or not acc.is_main_process)
    log_path = out / "metrics.csv"
    new_log = not log_path.exists() or step == 0
    with log_path.open("w" if new_log else "a", newline="") as logf:
        writer = csv.writer(logf)
        if new_log:
            writer.writerow(["step", "epoch", "loss", "lr"])
        epoch = step // max(steps_per_epoch, 1)
        while step < total:
            if hasattr(dataset, "epoch"):
                dataset.epoch = epoch  # new random episodes every epoch
            gen.manual_seed(args.seed + epoch)
            skip = (step - epoch * steps_per_epoch) * args.gradient_accumulation_steps  # resume inside an epoch
            for bi, batch in enumerate(loader):
                if bi < skip:
                    continue
                with acc.accumulate(model):
                    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    images=batch["images"], labels=batch["labels"], use_cache=False)
                    acc.backward(outputs.loss)
                    if acc.sync_gradients and args.max_grad_norm:
                        acc.clip_grad_norm_(params, args.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                if not acc.sync_gradients:
                    continue
                step += 1
                loss = float(outputs.loss.detach())
                losses.append(loss)
                if step % max(args.logging_steps, 1) == 0:
                    writer.writerow([step, epoch, f"{loss:.6f}", f"{scheduler.get_last_lr()[0]:.3e}"])
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if args.save_steps and step % args.save_steps == 0 and step < total:
                    full = acc.get_state_dict(model)  # every rank takes part in the FSDP gather
                    if acc.is_main_process:
                        save_checkpoint(acc.unwrap_model(model), tokenizer, optimizer, scheduler,
                                        {"step": step, "epoch": epoch, "losses": losses}, out, args.save_total_limit,
                                        state_dict=full)
                    acc.wait_for_everyone()
                if step >= total:
                    break
            epoch += 1
    bar.close()
    if final_dir is not None:
        full = acc.get_state_dict(model)
        if acc.is_main_process:
            acc.unwrap_model(model).save_pretrained(final_dir, state_dict=full, safe_serialization=True)
            tokenizer.save_pretrained(final_dir)
        acc.wait_for_everyone()
    model = acc.unwrap_model(model)
    model.eval()
    if args.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    if not losses:
        raise RuntimeError("training ran no steps")
    return summarize(losses)


def summarize(losses: list[float]) -> TrainSummary:
    """First/last loss as the mean over the first/last k steps (k = max(1, min(5, n // 4))): one
    episode's loss is noisy (random shots and classes), the trend is what the check reads."""
    k = max(1, min(5, len(losses) // 4))
    return TrainSummary(train_steps=len(losses), train_loss_first=float(np.mean(losses[:k])),
                        train_loss_last=float(np.mean(losses[-k:])), losses=losses)
