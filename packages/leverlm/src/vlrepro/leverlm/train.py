"""``train``: fit Lever-LM on D_M with Lightning (spec §1b).

Samples: the sorted unique anchors, first ``train_ratio`` for training and the rest for
validation; every beam is one sample ``[BOS, QUERY, icd…, EOS]``; beams scoring below
``threshold`` are dropped. CLIP features come from the frozen ``clip_name`` encoders and are
cached on disk (the captioning recipe freezes CLIP; see README for the VQA recipe's fine-tuning).

Checkpoints (safetensors) in ``model_cpk/{task}/{ex_name}/``: ``last``, ``min_tl-…`` (lowest
train loss) and ``min_vl-…`` (lowest val loss), plus ``lever_lm_config.json``; Lightning's own
``lightning/last.ckpt`` holds the optimiser state so ``resume=true`` continues a run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from vlrepro.shared.errors import VlreproError

from .data import limit, load_rows
from .generate import load_dm, result_root
from .method import LeverLM, modalities
from .retrieval import clip_features


# ----------------------------------------------------------------------------- data
def data_file(cfg: DictConfig) -> Path:
    """``data_files`` as a path; a bare file name (the original's usage) lives in ``<result_dir>/generated_data``."""
    from .generate import dm_name

    gen = result_root(cfg) / "generated_data"
    if not cfg.get("data_files"):
        return gen / f"{dm_name(cfg)}.json"
    p = Path(str(cfg.data_files))
    return p if (p.is_file() or "/" in str(cfg.data_files)) else gen / p


def split_samples(dm: dict[int, dict], train_ratio: float, threshold: float, reverse_seq: bool) -> tuple[list, list]:
    """(train, val) lists of (query_idx, [icd…]) from D_M, split by sorted anchor id."""
    anchors = sorted(dm)
    n_train = int(len(anchors) * train_ratio)
    parts: tuple[list, list] = ([], [])
    for i, a in enumerate(anchors):
        target = parts[0] if i < n_train else parts[1]
        for seq, score in zip(dm[a]["id_list"], dm[a]["score_list"], strict=False):
            if not math.isfinite(float(score)) or float(score) < threshold:
                continue  # a non-finite score can only come from a broken scorer: never train on it
            icds = list(seq[:-1])
            target.append((int(seq[-1]), icds[::-1] if reverse_seq else icds))
    return parts


def feature_tables(cfg: DictConfig, rows: list[dict], train_option: str, cache_dir: Path, device: str = "cpu") -> tuple[dict, dict]:
    """(query tables, ICD tables): modality -> [N, D] CLIP features of ``rows``."""
    q_mod, i_mod = modalities(train_option)
    clip = str(cfg.clip_name)
    img = None
    if "image" in q_mod or "image" in i_mod:
        img = clip_features(clip, "image", [r[cfg.task.image_field] for r in rows], cache_dir=cache_dir, device=device)
    q = {"image": img} if "image" in q_mod else {}
    i = {"image": img} if "image" in i_mod else {}
    if "text" in q_mod:
        q["text"] = clip_features(clip, "text", [r[cfg.task.query_text_feature_field] for r in rows], cache_dir=cache_dir, device=device)
    if "text" in i_mod:
        i["text"] = clip_features(clip, "text", [r[cfg.task.icd_text_feature_field] for r in rows], cache_dir=cache_dir, device=device)
    return q, i


def _collate(batch):
    q = torch.tensor([b[0] for b in batch], dtype=torch.long)
    icds = torch.tensor([b[1] for b in batch], dtype=torch.long)
    return q, icds


# ----------------------------------------------------------------------------- Lightning
def _lightning():
    import lightning.pytorch as pl

    return pl


def make_module(model_kwargs: dict, q_tables: dict, i_tables: dict, lr: float, weight_decay: float, warmup_ratio: float):
    pl = _lightning()

    class LeverLMModule(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lever_lm = LeverLM(**model_kwargs)
            self.q_tables, self.i_tables = q_tables, i_tables  # frozen CLIP features, not trained

        def _loss(self, batch):
            q, icds = batch
            ids = self.lever_lm.training_ids(icds)  # [B, l+3]
            qf = {m: t[q.cpu()].to(self.device) for m, t in self.q_tables.items()}
            icf = {m: t[icds.cpu()].to(self.device) for m, t in self.i_tables.items()}  # [B, l, D]
            return self.lever_lm(ids, qf, icf, labels=ids).loss

        def training_step(self, batch, _):
            loss = self._loss(batch)
            self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch[0].shape[0])
            return loss

        def validation_step(self, batch, _):
            self.log("val_loss", self._loss(batch), prog_bar=True, on_epoch=True, batch_size=batch[0].shape[0])

        def configure_optimizers(self):
            from transformers import get_cosine_schedule_with_warmup

            opt = torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
            total = max(1, int(self.trainer.estimated_stepping_batches))
            sched = get_cosine_schedule_with_warmup(opt, int(warmup_ratio * total), total)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return LeverLMModule()


def save_lever_lm(model: LeverLM, path: Path) -> None:
    from safetensors.torch import save_model
    from vlrepro.shared.atomic import write_atomic

    write_atomic(path, lambda tmp: save_model(model, tmp))


def make_checkpoint_callback(ckpt_dir: Path, losses: list[float]):
    pl = _lightning()

    class SafetensorsCheckpoints(pl.Callback):
        """last / min_tl / min_vl Lever-LM weights as safetensors after every epoch (spec §1b)."""

        def __init__(self):
            self.best = {"min_tl": math.inf, "min_vl": math.inf}

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            losses.append(float(loss.detach().cpu()))

        def on_train_epoch_end(self, trainer, module):
            m = trainer.callback_metrics
            tl = float(m.get("train_loss_epoch", m.get("train_loss", math.nan)))
            vl = float(m.get("val_loss", math.nan))
            e = trainer.current_epoch
            save_lever_lm(module.lever_lm, ckpt_dir / "last.safetensors")
            for key, val in (("min_tl", tl), ("min_vl", vl)):
                if not math.isnan(val) and val < self.best[key]:
                    self.best[key] = val
                    for old in ckpt_dir.glob(f"{key}-*.safetensors"):
                        old.unlink()
                    save_lever_lm(module.lever_lm, ckpt_dir / f"{key}-epoch={e}-train_loss={tl:.4f}-val_loss={vl:.4f}.safetensors")

    return SafetensorsCheckpoints()


def model_kwargs_from_cfg(cfg: DictConfig, index_ds_size: int) -> dict[str, Any]:
    m = cfg.train.lever_lm
    return dict(index_ds_size=index_ds_size, train_option=str(cfg.train.name), n_embd=int(m.n_embd), n_head=int(m.n_head),
                n_layer=int(m.n_layer), n_positions=int(m.n_positions), feature_dim=int(m.feature_dim),
                adapter=bool(m.adapter), norm=bool(m.norm))


def checkpoint_dir(cfg: DictConfig) -> Path:
    return result_root(cfg) / "model_cpk" / str(cfg.task.name) / str(cfg.ex_name)


def run_train(cfg: DictConfig) -> dict[str, Any]:
    """The ``train`` verb; returns the train summary (steps, first/last loss, checkpoint folder)."""
    pl = _lightning()
    pl.seed_everything(int(cfg.seed), workers=True)
    dm = load_dm(data_file(cfg))
    rows = limit(load_rows(cfg.dataset, "train"), int(cfg.get("index_data_num", -1)))
    n_index = len(rows)
    if int(cfg.dataset.train_ds_len) not in (-1, n_index) and int(cfg.get("index_data_num", -1)) < 0:
        print(f"[train] note: supporting set has {n_index} rows (config train_ds_len {cfg.dataset.train_ds_len})", flush=True)
    train_s, val_s = split_samples(dm, float(cfg.train_ratio), float(cfg.train.threshold), bool(cfg.train.reverse_seq))
    if not train_s:
        raise VlreproError(f"no training sequences in {data_file(cfg)} (all below threshold {cfg.train.threshold}?)",
                           fix="lower train.threshold or generate more anchors")
    if max(max(s[1]) for s in train_s) >= n_index:
        raise VlreproError(f"{data_file(cfg)} holds ICD ids ≥ the supporting set size {n_index}",
                           fix="train on the same dataset/index_data_num the data was generated with")
    ckpt_dir = checkpoint_dir(cfg)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    device = "cuda" if str(cfg.device).startswith("cuda") else "cpu"
    q_tab, i_tab = feature_tables(cfg, rows, str(cfg.train.name), result_root(cfg) / "cache" / "features", device)
    kwargs = model_kwargs_from_cfg(cfg, n_index)
    (ckpt_dir / "lever_lm_config.json").write_text(json.dumps({"model": kwargs, "clip_name": str(cfg.clip_name),
                                                                "task": OmegaConf.to_container(cfg.task, resolve=True)}, indent=1))
    module = make_module(kwargs, q_tab, i_tab, float(cfg.lr), float(cfg.weight_decay), float(cfg.warmup_ratio))
    g = torch.Generator().manual_seed(int(cfg.seed))
    train_dl = torch.utils.data.DataLoader(train_s, batch_size=int(cfg.batch_size), shuffle=True, collate_fn=_collate,
                                           num_workers=0, generator=g)
    val_dl = torch.utils.data.DataLoader(val_s, batch_size=int(cfg.batch_size), collate_fn=_collate) if val_s else None
    losses: list[float] = []
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    targs = OmegaConf.to_container(cfg.trainer_args, resolve=True)
    if device == "cpu":
        targs.update(accelerator="cpu", devices=1, precision="32-true")
        targs.pop("strategy", None)
    if val_dl is None:
        targs["limit_val_batches"] = 0
    trainer = pl.Trainer(default_root_dir=str(ckpt_dir), logger=CSVLogger(str(ckpt_dir), name="logs"),
                         callbacks=[make_checkpoint_callback(ckpt_dir, losses),
                                    ModelCheckpoint(dirpath=str(ckpt_dir / "lightning"), save_last=True, save_top_k=0)],
                         enable_model_summary=False, **targs)
    resume = str(ckpt_dir / "lightning" / "last.ckpt") if cfg.get("resume") and (ckpt_dir / "lightning" / "last.ckpt").is_file() else None
    trainer.fit(module, train_dl, val_dl, ckpt_path=resume)
    summary = {"train_steps": int(trainer.global_step), "train_loss_first": losses[0] if losses else math.nan,
               "train_loss_last": losses[-1] if losses else math.nan, "checkpoint_dir": str(ckpt_dir),
               "train_samples": len(train_s), "val_samples": len(val_s)}
    # smooth the endpoints over a few steps so one noisy batch does not decide "loss went down"
    k = min(len(losses) // 4, 5)
    if k:
        summary["train_loss_first"] = sum(losses[:k]) / k
        summary["train_loss_last"] = sum(losses[-k:]) / k
    print(f"[train] {summary['train_steps']} steps, loss {summary['train_loss_first']:.4f} -> {summary['train_loss_last']:.4f}; "
          f"checkpoints in {ckpt_dir}", flush=True)
    return summary


# ----------------------------------------------------------------------------- loading for inference
def find_checkpoint(cfg: DictConfig) -> Path:
    """``lever_lm_path`` if set, else the ``default_cpk_key`` file (last | min_vl | min_tl) in the run folder.

    The original took the first ``listdir`` match; we take the newest by name order, deterministically.
    """
    if cfg.get("lever_lm_path"):
        p = Path(str(cfg.lever_lm_path))
        if not p.is_file():
            raise VlreproError(f"Lever-LM checkpoint not found: {p}", fix="set lever_lm_path to a .safetensors file from `train`")
        return p
    d = checkpoint_dir(cfg)
    key = str(cfg.default_cpk_key)
    if key not in ("last", "min_vl", "min_tl"):
        raise VlreproError(f"default_cpk_key {key!r} is not known", fix="use last, min_vl or min_tl")
    hits = sorted(d.glob(f"{key}*.safetensors"))
    if not hits:
        raise VlreproError(f"no '{key}' Lever-LM checkpoint in {d}", fix="run `vlrepro-leverlm train` first or set lever_lm_path")
    return hits[-1]


def load_lever_lm(path: Path, device: str = "cpu") -> tuple[LeverLM, dict]:
    from safetensors.torch import load_model

    conf_path = path.parent / "lever_lm_config.json"
    if not conf_path.is_file():
        raise VlreproError(f"missing {conf_path} beside the checkpoint", fix="keep lever_lm_config.json with the weights")
    conf = json.loads(conf_path.read_text())
    model = LeverLM(**conf["model"])
    load_model(model, str(path), strict=True)
    return model.to(device).eval(), conf
