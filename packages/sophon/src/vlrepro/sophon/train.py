"""Two-stage SQ-LLaVA training with the HF Trainer (spec §3).

- ``pretrain`` (stage 1, alignment): template ``plain``, only the projector trains (lr 1e-3),
  writes ``mm_projector.safetensors``.
- ``finetune`` (stage 2, self-questioning instruction tuning): template ``v1_sq`` with
  ``sq_r`` 0.5, LoRA (r 128, alpha 256) on the LLM + the projector (``mm_projector_lr`` 2e-5),
  optional ViT-LoRA, writes the released adapter / ``non_lora_trainables`` layout.

DeepSpeed: ``deepspeed=zero2|zero3|zero3_offload`` (shipped JSON) or a path. DeepSpeed is not a
dependency of this package; asking for it without it installed is a one-line error. CPU runs
never need it.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from vlrepro.shared.errors import VlreproError
from vlrepro.shared.paths import dataset_dir

from . import checkpoint as ckpt
from .data import LazySupervisedDataset, SupervisedCollator, load_training_records, modality_grouped_indices

log = logging.getLogger(__name__)

DEEPSPEED_PRESETS = ("zero2", "zero3", "zero3_offload")


def deepspeed_config_path(name: str | None) -> str | None:
    """The shipped ZeRO JSON for ``zero2``/``zero3``/``zero3_offload``, or a user path; checks deepspeed is importable."""
    if not name:
        return None
    if importlib.util.find_spec("deepspeed") is None:
        raise VlreproError(f"deepspeed={name} needs the deepspeed package, which is not installed",
                           fix="pip install deepspeed (GPU machines), or drop deepspeed= to train without it")
    if name in DEEPSPEED_PRESETS:
        return str(files("vlrepro.sophon.configs").joinpath("deepspeed_json", f"{name}.json"))
    if not Path(name).is_file():
        raise VlreproError(f"deepspeed config not found: {name}", fix=f"use one of {', '.join(DEEPSPEED_PRESETS)} or a JSON path")
    return name


def resolve_data(cfg: DictConfig) -> tuple[Path, Path]:
    """``data_path`` and ``image_folder``; relative names resolve under ``$LLAVA_DATA_PATH``."""
    root = dataset_dir("llava", cfg.get("data_root") or None)
    data_path = Path(cfg.data_path)
    data_path = data_path if data_path.is_absolute() or data_path.exists() else root / data_path
    if not cfg.get("image_folder"):  # null: images sit beside the JSON (mixTraindata/{coco,gqa,...})
        return data_path, root
    image_folder = Path(cfg.image_folder)
    image_folder = image_folder if image_folder.is_absolute() or image_folder.exists() else root / image_folder
    return data_path, image_folder


def _trainer_cls():
    from transformers import Trainer

    class SqLlavaTrainer(Trainer):
        """``LLaVATrainer``: modality-grouped sampling, projector/vision learning rates, lean checkpoints."""

        def __init__(self, *args: Any, stage: str, mm_projector_lr: float | None, vision_tower_lr: float | None,
                     group_by_modality_length: bool, sq_config, **kwargs: Any):
            self.stage = stage
            self.mm_projector_lr = mm_projector_lr
            self.vision_tower_lr = vision_tower_lr
            self.group_by_modality_length = group_by_modality_length
            self.sq_config = sq_config
            super().__init__(*args, **kwargs)

        def _get_train_sampler(self, *args: Any, **kwargs: Any):
            if not self.group_by_modality_length:
                return super()._get_train_sampler(*args, **kwargs)
            lengths = self.train_dataset.modality_lengths
            gen = torch.Generator().manual_seed(self.args.seed)
            order = modality_grouped_indices(lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                             self.args.world_size, gen)
            return order  # a list is a valid sampler (an iterable of indices)

        def create_optimizer(self):
            if self.optimizer is not None:
                return self.optimizer
            decay_names = set(self.get_decay_parameter_names(self.model))
            groups: dict[tuple[float, float], list] = {}
            for name, p in self.model.named_parameters():
                if not p.requires_grad:
                    continue
                lr = self.args.learning_rate
                if self.mm_projector_lr is not None:
                    if "mm_projector" in name:
                        lr = self.mm_projector_lr
                    elif "vision_tower" in name and self.vision_tower_lr is not None:
                        lr = self.vision_tower_lr
                wd = self.args.weight_decay if name in decay_names else 0.0
                groups.setdefault((lr, wd), []).append(p)
            params = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
            opt_cls, opt_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args)
            opt_kwargs.pop("lr", None)
            self.optimizer = opt_cls(params, lr=self.args.learning_rate, **opt_kwargs)
            return self.optimizer

        def _save(self, output_dir: str | None = None, state_dict=None):
            out = Path(output_dir or self.args.output_dir)
            if self.stage == "pretrain":
                ckpt.save_stage1(ckpt.unwrap(self.model), out)
            else:
                ckpt.save_stage2(self.model, out, self.sq_config)

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None):
            path = Path(resume_from_checkpoint)
            base = ckpt.unwrap(model or self.model)
            if self.stage == "pretrain":
                ckpt.load_projector(base, path / ckpt.PROJECTOR_FILE)
                return
            ckpt.load_non_lora_trainables(base, path / ckpt.NON_LORA_FILE)
            from peft.utils import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(model or self.model, load_file(str(path / "adapter_model.safetensors")))

    return SqLlavaTrainer


def _last_checkpoint(out_dir: Path) -> str | None:
    cks = sorted(out_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    return str(cks[-1]) if cks else None


def set_trainable(model, stage: str, *, tune_vision_lora: bool) -> None:
    """Stage 1: projector only. Stage 2: LoRA (set by peft) + projector (+ ViT LoRA)."""
    base = ckpt.unwrap(model)
    if stage == "pretrain":
        for p in base.parameters():
            p.requires_grad = False
    for p in base.model.mm_projector.parameters():
        p.requires_grad = True
    if stage == "pretrain" or not tune_vision_lora:
        for p in base.model.vision_tower.parameters():
            p.requires_grad = False


def run_train(cfg: DictConfig) -> dict[str, Any]:
    """Train one stage as configured; returns a summary (steps, first/last loss, output folder)."""
    from transformers import TrainingArguments, set_seed

    stage = cfg.stage
    if stage not in ("pretrain", "finetune"):
        raise VlreproError(f"unknown stage {stage!r}", fix="stage=pretrain or stage=finetune")
    if stage == "pretrain" and cfg.version == "v1_sq":
        raise VlreproError("stage=pretrain with the v1_sq template: stage 1 aligns on captions with the plain template",
                           fix="use `vlrepro-sophon pretrain` or experiment=pretrain_7b (or version=plain)")
    data_path, image_folder = resolve_data(cfg)
    records = load_training_records(data_path, image_folder)  # fails fast, before any model is loaded
    if cfg.get("max_samples"):
        records = records[: int(cfg.max_samples)]
    ds_path = deepspeed_config_path(cfg.get("deepspeed"))
    set_seed(int(cfg.seed))
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    on_cpu = str(cfg.device) == "cpu"
    dtype = torch.bfloat16 if (cfg.bf16 and not on_cpu) else None

    tokenizer = ckpt.load_tokenizer(str(cfg.get("tokenizer_path") or cfg.model_name_or_path), int(cfg.model_max_length))
    image_processor = ckpt.load_image_processor(str(cfg.vision_tower))
    model = ckpt.build_from_base(str(cfg.model_name_or_path), str(cfg.vision_tower), mm_projector_type=cfg.mm_projector_type,
                                 num_centers=int(cfg.num_centers), cluster_iters=int(cfg.cluster_iters),
                                 mm_vision_select_layer=int(cfg.mm_vision_select_layer),
                                 image_aspect_ratio=cfg.image_aspect_ratio, torch_dtype=dtype,
                                 vit_lora_compat=bool(cfg.get("vit_lora_compat", False)))
    model.config.use_cache = False
    if cfg.get("pretrain_mm_mlp_adapter"):
        ckpt.load_projector(model, cfg.pretrain_mm_mlp_adapter)
    sq_config = model.config
    if stage == "finetune" and cfg.get("vit_lora_enable"):
        ckpt.apply_vit_lora(model, int(cfg.vit_lora_r), int(cfg.vit_lora_alpha), float(cfg.get("vit_lora_dropout", 0.2)))
    if stage == "finetune" and cfg.lora_enable:
        model = ckpt.apply_llm_lora(model, int(cfg.lora_r), int(cfg.lora_alpha), float(cfg.lora_dropout))
    set_trainable(model, stage, tune_vision_lora=bool(cfg.get("vit_lora_enable")))
    if stage == "finetune" and cfg.get("vit_lora_enable"):
        for n, p in model.named_parameters():
            if "vision_tower" in n and "lora_" in n:
                p.requires_grad = True
    if cfg.gradient_checkpointing and not on_cpu:
        ckpt.unwrap(model).gradient_checkpointing_enable()
        ckpt.unwrap(model).enable_input_require_grads()
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    print(f"[{stage}] trainable parameters: {n_train:,} of {n_all:,} ({100 * n_train / n_all:.2f}%)", flush=True)

    dataset = LazySupervisedDataset(records, tokenizer, image_processor, version=cfg.version, sq_r=float(cfg.sq_r),
                                    image_aspect_ratio=cfg.image_aspect_ratio, model_max_length=int(cfg.model_max_length),
                                    seed=int(cfg.seed))
    args = TrainingArguments(
        output_dir=str(out_dir), num_train_epochs=float(cfg.num_train_epochs), max_steps=int(cfg.get("max_steps") or -1),
        per_device_train_batch_size=int(cfg.per_device_train_batch_size),
        gradient_accumulation_steps=int(cfg.gradient_accumulation_steps), learning_rate=float(cfg.learning_rate),
        weight_decay=float(cfg.weight_decay), warmup_ratio=float(cfg.warmup_ratio), lr_scheduler_type=cfg.lr_scheduler_type,
        logging_steps=int(cfg.logging_steps), save_strategy=cfg.save_strategy, save_steps=int(cfg.save_steps),
        save_total_limit=int(cfg.save_total_limit), bf16=bool(cfg.bf16) and not on_cpu, tf32=bool(cfg.tf32) and not on_cpu or None,
        dataloader_num_workers=int(cfg.dataloader_num_workers), report_to=list(cfg.report_to) if cfg.report_to else [],
        seed=int(cfg.seed), data_seed=int(cfg.seed), remove_unused_columns=False, deepspeed=ds_path, use_cpu=on_cpu,
        disable_tqdm=bool(cfg.get("disable_tqdm", False)), save_safetensors=True,
    )
    trainer = _trainer_cls()(model=model, args=args, train_dataset=dataset, data_collator=SupervisedCollator(tokenizer.pad_token_id),
                             stage=stage, mm_projector_lr=cfg.get("mm_projector_lr"), vision_tower_lr=cfg.get("vision_tower_lr"),
                             group_by_modality_length=bool(cfg.group_by_modality_length), sq_config=sq_config)
    resume = cfg.get("resume")
    resume_from = (_last_checkpoint(out_dir) if resume is True or resume == "auto" else resume) or None
    trainer.train(resume_from_checkpoint=resume_from)
    trainer._save(str(out_dir))
    tokenizer.save_pretrained(out_dir)
    image_processor.save_pretrained(out_dir)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    # ViT-LoRA B matrices start at 0: a non-zero norm shows the adapter trained (the original's stayed 0, spec §1.4)
    vit_b = [p.detach().float().norm().item() for n, p in model.named_parameters() if "vision_tower" in n and "lora_B" in n]
    k = max(1, min(3, len(losses) // 3)) if losses else 1
    summary = {
        "train_steps": int(trainer.state.global_step),
        # averaged over the first/last k logged steps: single-batch losses are noisy on tiny data
        "train_loss_first": float(sum(losses[:k]) / k) if losses else math.nan,
        "train_loss_last": float(sum(losses[-k:]) / k) if losses else math.nan,
        "losses": losses, "out_dir": str(out_dir), "tokenization_mismatches": dataset.mismatches,
        "trainable_params": n_train,
        "vit_lora_B_norm": float(sum(vit_b)) if vit_b else None,
    }
    (out_dir / "train_summary.json").write_text(__import__("json").dumps(summary, indent=2), encoding="utf-8")
    vit = f"; ViT-LoRA |B| = {summary['vit_lora_B_norm']:.4g}" if vit_b else ""
    print(f"[{stage}] {summary['train_steps']} steps, loss {summary['train_loss_first']:.4f} -> {summary['train_loss_last']:.4f}"
          f"{vit}; saved to {out_dir}", flush=True)
    return summary


def train_verb(cfg: DictConfig) -> int:
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    run_train(cfg)
    return 0
