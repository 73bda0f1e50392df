"""Training LIVE with Lightning (spec §1.3, §3): the frozen LMM, the ICV encoder, KL + CE.

``vlrepro-live train [overrides]`` composes ``configs/train.yaml``; the seed README's overrides
(``icv_module.icv_lr=1e-3``, ``data_cfg/task/datasets=ok_vqa``, ``lmm=idefics2-8B-base``, ...) work
as written. Only the ICV parameters are optimised (AdamW, two groups: alpha at ``alpha_lr``, the
vectors at ``icv_lr``; cosine schedule with warmup). Lightning checkpoints hold only those
parameters and the optimiser state, so ``resume=true`` is cheap; the final artefact is
``icv_cpk.safetensors`` (``checkpoint.py``).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from vlrepro.shared.errors import VlreproError
from vlrepro.shared.paths import root_dir

from .checkpoint import CHECKPOINT_NAME, save_icv
from .data import ICVTrainDataset, ICVTrainItem, collate_items, load_split
from .method import GlobalICVEncoder, answer_position_mask, icv_hooks, live_loss
from .models import LMMAdapter, load_lmm
from .prompts import VQAPrompt

HARD_LOSS_POSITIONS = ("non_pad", "answer", "all")


# ----------------------------------------------------------------------------- config helpers


def resolved(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def run_dir(cfg: DictConfig) -> Path:
    """``out_dir`` if given, else ``<RESULT_DIR>/<dataset>/<lmm>/<run_name>`` (the original's model_cpk layout)."""
    if cfg.get("out_dir"):
        return Path(cfg.out_dir)
    base = root_dir("results", cfg.get("result_dir"))
    return base / str(cfg.data_cfg.task.datasets.name) / str(cfg.lmm.name) / str(cfg.run_name)


def prompt_from_cfg(cfg: DictConfig) -> VQAPrompt:
    p = cfg.prompt
    return VQAPrompt(instruction=p.instruction, icd_template=p.icd_template, query_template=p.query_template, sep=p.sep)


def model_path(lmm_cfg: DictConfig) -> str:
    """``lmm.model_path`` > ``$MODEL_CPK_DIR/<model_name>`` if that folder exists > the hub id."""
    if lmm_cfg.get("model_path"):
        return str(lmm_cfg.model_path)
    local = root_dir("weights", None) / str(lmm_cfg.model_name)
    return str(local) if local.is_dir() else str(lmm_cfg.hf_id)


def build_adapter(cfg: DictConfig) -> LMMAdapter:
    lmm = cfg.lmm
    adapter = load_lmm(lmm.family, model_path(lmm), name=lmm.name, precision=lmm.precision, device=cfg.device,
                       processor_kwargs=dict(lmm.get("processor_kwargs") or {}),
                       trust_remote_code=bool(lmm.get("trust_remote_code", False)))
    return adapter


def check_icv_cfg(icv: DictConfig) -> None:
    if icv.only_hard_loss and float(icv.hard_loss_weight) == 0:
        raise VlreproError("icv_module.only_hard_loss=true with icv_module.hard_loss_weight=0 leaves no loss",
                           fix="set icv_module.hard_loss_weight>0 (README runs use 0.5)")
    if icv.hard_loss_positions not in HARD_LOSS_POSITIONS:
        raise VlreproError(f"icv_module.hard_loss_positions={icv.hard_loss_positions!r} is not known",
                           fix=f"choose one of {', '.join(HARD_LOSS_POSITIONS)}")


# ----------------------------------------------------------------------------- LightningModule


class LIVEModule(pl.LightningModule):
    """The original's ``VQAICVModule``: frozen LMM (teacher and student) + trainable ``icv_encoder``."""

    def __init__(self, adapter: LMMAdapter, encoder: GlobalICVEncoder, layer_names: list[str], icv_cfg: dict[str, Any]) -> None:
        super().__init__()
        self.lmm = adapter.model  # registered so Lightning moves it; frozen
        self.adapter = adapter
        self.icv_encoder = encoder
        self.layer_names = layer_names
        self.icv_cfg = icv_cfg
        self.strict_loading = False  # checkpoints hold only the encoder
        self.epoch_losses: list[list[float]] = []

    # the LMM stays in eval mode (no dropout) while the encoder trains
    def on_train_epoch_start(self) -> None:
        self.lmm.eval()
        self.epoch_losses.append([])
        dl = self.trainer.train_dataloader
        ds = getattr(dl, "dataset", None)
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(self.current_epoch)

    def _encode(self, items: list[list], *, add_eos: bool) -> dict[str, torch.Tensor]:
        enc = self.adapter.encode(items, add_eos_token=add_eos, padding_side="right")
        return {k: v.to(self.device) for k, v in enc.items()}

    def compute_loss(self, batch: list[ICVTrainItem]) -> dict[str, torch.Tensor]:
        cfg = self.icv_cfg
        student = self._encode([it.student for it in batch], add_eos=True)
        query_x_len = torch.tensor([self.adapter.text_length(it.query_x) for it in batch], device=self.device)
        student_mask = answer_position_mask(student["attention_mask"], query_x_len)  # (B, T_s)
        teacher_logits = teacher_mask = None
        if not cfg["only_hard_loss"]:
            teacher = self._encode([it.teacher for it in batch], add_eos=True)
            ice_len = torch.tensor([self.adapter.text_length(it.ice) for it in batch], device=self.device)
            # the query's BOS is not repeated inside the teacher sequence
            teacher_mask = answer_position_mask(teacher["attention_mask"], ice_len + query_x_len - 1)  # (B, T_t)
            with torch.no_grad():
                teacher_logits = self.adapter.logits(teacher)  # hooks off: the few-shot ICL teacher
        with icv_hooks(self.lmm, self.layer_names, self.icv_encoder):
            student_logits = self.adapter.logits(student)  # (B, T_s, V)
        positions = cfg["hard_loss_positions"]
        if positions == "answer":
            ce_mask = student_mask
        elif positions == "all":  # transformers <= 4.39 IDEFICS: all-ones mask, pads counted
            ce_mask = torch.ones_like(student["attention_mask"])
        else:
            ce_mask = student["attention_mask"]
        return live_loss(
            student_logits=student_logits, student_mask=student_mask, student_input_ids=student["input_ids"],
            ce_mask=ce_mask, teacher_logits=teacher_logits, teacher_mask=teacher_mask,
            hard_loss_weight=float(cfg["hard_loss_weight"]), only_hard_loss=bool(cfg["only_hard_loss"]),
            temperature=float(cfg["init_temperature"]), kl_eps=float(cfg["kl_eps"]),
        )

    def training_step(self, batch: list[ICVTrainItem], batch_idx: int) -> torch.Tensor:
        losses = self.compute_loss(batch)
        for name, value in losses.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss", batch_size=len(batch))
        self.epoch_losses[-1].append(float(losses["loss"].detach()))
        return losses["loss"]

    def configure_optimizers(self):
        from transformers import get_cosine_schedule_with_warmup

        cfg = self.icv_cfg
        groups = [{"params": [self.icv_encoder.icv], "lr": float(cfg["icv_lr"])}]
        if self.icv_encoder.alpha.requires_grad:
            groups.append({"params": [self.icv_encoder.alpha], "lr": float(cfg["alpha_lr"])})
        optimizer = torch.optim.AdamW(groups, weight_decay=float(cfg["weight_decay"]))
        total = int(self.trainer.estimated_stepping_batches)
        warm = cfg["warm_steps"]
        warm_steps = int(warm * total) if isinstance(warm, float) and warm < 1 else int(warm)
        scheduler = get_cosine_schedule_with_warmup(optimizer, warm_steps, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # keep the 0.13 M ICV parameters, never the frozen LMM
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("icv_encoder.")}


# ----------------------------------------------------------------------------- trainer


def build_trainer(cfg: DictConfig, out: Path, *, progress_bar: bool = True) -> pl.Trainer:
    tcfg = dict(resolved(cfg.trainer))
    strategy = str(tcfg.get("strategy", "auto"))
    if "deepspeed" in strategy and importlib.util.find_spec("deepspeed") is None:
        raise VlreproError(f"trainer.strategy={strategy} needs deepspeed, which is not installed",
                           fix="pip install deepspeed, or use trainer=default (ddp; 0.13 M parameters need no ZeRO)")
    if tcfg.get("accelerator") == "gpu" and not torch.cuda.is_available():
        raise VlreproError(f"trainer={cfg.get('trainer_name', 'default')} needs a GPU and none is visible",
                           fix="run on a GPU machine or use trainer=cpu")
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    callbacks = [ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0)]
    return pl.Trainer(default_root_dir=str(out), logger=CSVLogger(str(out), name="logs"), callbacks=callbacks,
                      enable_progress_bar=progress_bar, enable_model_summary=False, **tcfg)


def train(cfg: DictConfig, *, progress_bar: bool = True) -> dict[str, Any]:
    """Train one ICV; returns a summary (steps, first/last epoch-mean loss, checkpoint path)."""
    check_icv_cfg(cfg.icv_module)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    ds_cfg = cfg.data_cfg.task.datasets
    records = load_split(ds_cfg, ds_cfg.get("split", "train"))  # a missing file fails here, before the model loads
    dataset = ICVTrainDataset(records, few_shot_num=ds_cfg.few_shot_num, max_train_size=ds_cfg.max_train_size,
                              seed=int(cfg.seed), prompt=prompt_from_cfg(cfg), select_from_query=ds_cfg.select_from_query)
    out = run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(cfg, out, progress_bar=progress_bar)
    adapter = build_adapter(cfg)
    if cfg.lmm.get("gradient_checkpointing"):
        # non-reentrant: the frozen LMM's inputs need no grad for the ICV's gradients to flow
        adapter.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layer_names = adapter.layer_names(cfg.lmm.intervention_layer)
    enc_cfg = cfg.icv_module.icv_encoder
    encoder = GlobalICVEncoder(len(layer_names), adapter.hidden_size, use_sigmoid=enc_cfg.use_sigmoid,
                               alpha_learnable=enc_cfg.alpha_learnable, alpha_init_value=enc_cfg.alpha_init_value)
    module = LIVEModule(adapter, encoder, layer_names, resolved(cfg.icv_module))
    loader = DataLoader(dataset, batch_size=int(cfg.data_cfg.bs), shuffle=True, num_workers=int(cfg.data_cfg.num_workers),
                        collate_fn=collate_items, generator=torch.Generator().manual_seed(int(cfg.seed)),
                        persistent_workers=False)
    last = out / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if cfg.get("resume") and last.is_file() else None
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    cpk = save_icv(out / CHECKPOINT_NAME, module.icv_encoder, layer_names=layer_names, config=resolved(cfg))
    epochs = [sum(e) / len(e) for e in module.epoch_losses if e]
    summary = {
        "train_steps": int(trainer.global_step),
        "train_loss_first": epochs[0] if epochs else math.nan,
        "train_loss_last": epochs[-1] if epochs else math.nan,
        "train_loss_per_epoch": epochs,
        "icv_cpk": str(cpk),
        "trainable_parameters": encoder.num_trainable(),
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def run_train(cfg: DictConfig) -> int:
    summary = train(cfg)
    print(f"trained {summary['train_steps']} steps; loss {summary['train_loss_first']:.4f} -> "
          f"{summary['train_loss_last']:.4f}; ICV checkpoint {summary['icv_cpk']}")
    return 0
