"""``vlrepro-live smoke``: the whole LIVE pipeline on embedded data, in about a minute on a CPU.

1. ``make_mini("vqav2")``: a small VQAv2 (coloured shapes) in the official layout under ``<out>/data``;
2. a tiny random IDEFICS (real architecture) saved with ``save_pretrained`` to ``<out>/model`` and
   loaded back through ``from_pretrained``;
3. Lightning training of the ICV (KL from the 2-shot teacher + 0.5 CE), loss per epoch printed;
4. ``eval``: the ICV model, zero-shot and 2-shot ICL, VQA accuracy -> ``<out>/results.json``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, open_dict
from vlrepro.shared.data import make_mini

from .evaluate import evaluate
from .tiny import save_tiny_lmm
from .train import train


def run_smoke(cfg: DictConfig) -> int:
    t0 = time.time()
    out = Path(cfg.out_dir) if cfg.get("out_dir") else Path(tempfile.mkdtemp(prefix="vlrepro-live-smoke-"))
    out.mkdir(parents=True, exist_ok=True)
    data = make_mini("vqav2", out / "data", seed=int(cfg.smoke.mini_seed), n=int(cfg.smoke.mini_n))
    print(f"[smoke] mini VQAv2 written to {data}")
    model_dir = save_tiny_lmm(str(cfg.lmm.family), out / "model", seed=int(cfg.seed))
    print(f"[smoke] tiny {cfg.lmm.family} saved to {model_dir}")
    with open_dict(cfg):
        cfg.out_dir = str(out)
        cfg.lmm.model_path = str(model_dir)
        cfg.data_cfg.task.datasets.root_dir = str(data / "vqav2")
        cfg.data_cfg.task.datasets.coco_root = str(data / "coco")
    summary = train(cfg, progress_bar=False)
    losses = " -> ".join(f"{x:.4f}" for x in summary["train_loss_per_epoch"])
    print(f"[smoke] trained {summary['train_steps']} steps, epoch-mean loss {losses}")
    train_info = {k: summary[k] for k in ("train_steps", "train_loss_first", "train_loss_last")}
    rows = evaluate(cfg, progress=False, train_info=train_info)
    for r in rows:
        print(f"[smoke] {r['model']}: {r['metric']} {r['value']:.2f} (n={r['n']})")
    print(f"[smoke] done in {time.time() - t0:.1f} s; results in {out / 'results.json'}")
    if not summary["train_loss_last"] < summary["train_loss_first"]:
        print("[smoke] warning: the training loss did not go down")
        return 1
    return 0
