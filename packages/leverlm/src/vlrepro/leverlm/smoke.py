"""``smoke``: the whole Lever-LM pipeline on embedded data with tiny random models, in well under a minute.

make_mini COCO 2017 -> tiny CLIP (features cached) + tiny IDEFICS or OpenFlamingo saved and
reloaded through the real loading path -> ``generate`` (InfoScore beam search) -> ``train``
(Lever-LM, loss must go down) -> ``eval`` (Lever-LM configurations vs RS and SIIR, CIDEr) ->
``<out>/results.json``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig
from vlrepro.shared.paper_cli import compose
from vlrepro.shared.results import write_results

CONFIGS = "vlrepro.leverlm.configs"


def run_smoke(cfg: DictConfig) -> int:
    from vlrepro.shared.data import make_mini
    from vlrepro.shared.testing import tiny_clip_model

    from .evaluate import run_eval
    from .generate import run_generate
    from .lvlm import build_tiny_flamingo, build_tiny_idefics
    from .train import run_train

    t0 = time.time()
    out = Path(str(cfg.out_dir)) if cfg.out_dir else Path(tempfile.mkdtemp(prefix="leverlm-smoke-"))
    out.mkdir(parents=True, exist_ok=True)
    seed = int(cfg.seed)
    print(f"[smoke] output in {out}", flush=True)
    data = make_mini("coco2017", out / "data", seed=seed)
    clip = tiny_clip_model(out / "models" / "clip", seed=seed)
    build = build_tiny_idefics if cfg.family == "idefics" else build_tiny_flamingo
    lvlm_dir = build(out / "models" / f"tiny_{cfg.family}", seed=seed)
    print(f"[smoke] mini data + tiny CLIP + tiny {cfg.family} ready ({time.time() - t0:.1f}s)", flush=True)

    common = [f"infer_model=tiny_{cfg.family}", f"infer_model.model_path={lvlm_dir}", "dataset=coco2017",
              f"dataset.coco_path={Path(data) / 'coco'}", f"task={cfg.task}", f"out_dir={out}", f"seed={seed}",
              f"device={cfg.device}", f"sampler_num={cfg.sample_num}", f"cand_num={cfg.cand_num}"]
    gen_cfg = compose(CONFIGS, "generate", common + [
        f"beam_size={cfg.beam_size}", f"few_shot_num={cfg.few_shot_num}", f"batch_size={cfg.batch_size}", f"clip_name={clip}"])
    dm_file = run_generate(gen_cfg)
    import json
    import math

    scores = [s for v in json.loads(Path(dm_file).read_text()).values() for s in v["score_list"]]
    if not scores or not all(math.isfinite(s) and -1 < s < 1 for s in scores):
        print(f"[smoke] FAILED: D_M InfoScores must be finite and in (-1, 1): {scores[:6]}", flush=True)
        return 1
    print(f"[smoke] generate done ({time.time() - t0:.1f}s)", flush=True)

    lm = ["train.lever_lm.n_embd=32", "train.lever_lm.n_head=2", "train.lever_lm.n_positions=16", "train.lever_lm.feature_dim=32",
          "train.lever_lm.adapter=false", "train.lever_lm.norm=false"]
    train_cfg = compose(CONFIGS, "train", common + lm + [
        f"train={cfg.train_option}", "train.threshold=-1.0", f"beam_size={cfg.beam_size}", f"few_shot_num={cfg.few_shot_num}",
        f"clip_name={clip}", "batch_size=8", f"lr={cfg.lr}", "train_ratio=0.75", "ex_name=smoke",
        f"trainer_args.max_epochs={cfg.epochs}", "trainer_args.val_check_interval=1.0", "trainer_args.log_every_n_steps=1",
        "trainer_args.enable_progress_bar=false"])
    summary = run_train(train_cfg)
    print(f"[smoke] train done ({time.time() - t0:.1f}s)", flush=True)

    shots = ",".join(str(s) for s in cfg.shot_num_list)
    eval_cfg = compose(CONFIGS, "eval", common[:-2] + [
        f"train={cfg.train_option}", "ex_name=smoke", "test_lever_lm=true", "test_random=true", "test_i2i=true",
        f"shot_num_list=[{shots}]", f"test_data_num={cfg.test_data_num}", f"inference_bs={cfg.test_data_num}",
        f"task.gen_args.max_new_tokens={cfg.max_new_tokens}", f"mmtopk_clip_name={clip}", "lever_lm_bs=8"])
    rows = run_eval(eval_cfg)
    train_info = {k: summary[k] for k in ("train_steps", "train_loss_first", "train_loss_last")}
    for r in rows:
        if r.get("retriever") == "lever_lm":
            r.update(train_info)
    path = write_results(out, rows)
    down = summary["train_loss_last"] < summary["train_loss_first"]
    print(f"[smoke] Lever-LM loss {summary['train_loss_first']:.4f} -> {summary['train_loss_last']:.4f} "
          f"({'down' if down else 'NOT down'}); wrote {path} in {time.time() - t0:.1f}s", flush=True)
    return 0 if down else 1
