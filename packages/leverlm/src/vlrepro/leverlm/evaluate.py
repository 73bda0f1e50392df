"""``eval`` (the original's ``icl_inference.py``, spec §1c): choose each query's ICDs, run ICL, score.

Retrievers (each enabled by its flag): Lever-LM (``test_lever_lm``; greedy, no repeats, generated
once for the largest shot number and cut for smaller ones), RS (``test_random``), STTR
(``test_t2t``), SITR (``test_i2t``), SIIR (``test_i2i``) and zero-shot (``test_zero_shot``). For
every ``shot_num_list`` entry the LVLM generates with [ICD_1 … ICD_k, query], the output is
post-processed and scored: CIDEr ×100 for captioning, VQA accuracy for VQAv2.

Written under ``icl_inference/{infer_model.name}/{task}/{ex_name}/``: ``metrics.json`` in the
original layout, ``generation_metainfo/<retriever>-shot_num=<k>.json`` per-sample outputs (reused
on a rerun, so an interrupted evaluation resumes), and ``results.json`` (vlrepro schema).
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from vlrepro.shared.atomic import write_json_atomic
from vlrepro.shared.errors import VlreproError, read_json
from vlrepro.shared.results import result_row, write_results

from . import PAPER
from .data import limit, load_rows
from .generate import result_root
from .prompts import generation_text, images_of, postprocess, sequence_items
from .retrieval import clip_features, random_retrieval, similarity_retrieval

#: the paper's Avg over 1–8 shots (spec §7, unverified third-party figures)
PAPER_VALUES = {("vqa", "flamingo", "lever_lm"): 51.31, ("vqa", "flamingo", "RS"): 47.94,
                ("vqa", "idefics", "lever_lm"): 54.44, ("vqa", "idefics", "RS"): 53.54,
                ("caption", "flamingo", "lever_lm"): 92.45, ("caption", "flamingo", "RS"): 88.48}


def lever_lm_configurations(cfg: DictConfig, train_rows: list[dict], test_rows: list[dict], shot: int, device: str) -> list[list[int]]:
    """Lever-LM's ICD configuration [len(test), shot] for every test query (batches of ``lever_lm_bs``)."""
    from .train import feature_tables, find_checkpoint, load_lever_lm

    path = find_checkpoint(cfg)
    model, conf = load_lever_lm(path, device)
    cache = result_root(cfg) / "cache" / "features"
    sub = OmegaConf.create({"clip_name": conf["clip_name"], "task": conf["task"]})
    _, icd_tab = feature_tables(sub, train_rows, model.train_option, cache, device)
    q_tab, _ = feature_tables(sub, test_rows, model.train_option, cache, device)
    out: list[list[int]] = []
    bs = int(cfg.lever_lm_bs)
    for i in range(0, len(test_rows), bs):
        qf = {m: t[i : i + bs].to(device) for m, t in q_tab.items()}
        ids = model.generate(qf, shot, lambda chosen: {m: t[chosen.cpu()].to(device) for m, t in icd_tab.items()},
                             ban=str(cfg.lever_lm_ban))
        out += ids.tolist()
    if cfg.get("reverse_seq"):
        out = [row[::-1] for row in out]
    print(f"[eval] Lever-LM {path.name}: configurations for {len(out)} queries", flush=True)
    return out


def retrievals(cfg: DictConfig, train_rows: list[dict], test_rows: list[dict], device: str) -> dict[str, Any]:
    """retriever name -> function shot -> [len(test), shot] ICD indices."""
    max_shot = max(int(s) for s in cfg.shot_num_list)
    out: dict[str, Any] = {}
    cache = result_root(cfg) / "cache" / "features"
    clip = str(cfg.mmtopk_clip_name)
    rev = bool(cfg.mmtopk_reversed_order)
    if cfg.test_lever_lm:
        full = lever_lm_configurations(cfg, train_rows, test_rows, max_shot, device)
        out["lever_lm"] = lambda k, full=full: [row[:k] for row in full]
    if cfg.test_random:
        out["RS"] = lambda k: random_retrieval(len(test_rows), len(train_rows), k, seed=int(cfg.seed),
                                               fixed=bool(cfg.get("random_retrieval_fixed", False)))
    t = cfg.task

    def feats(rows, kind, field):
        return clip_features(clip, kind, [r[field] for r in rows], cache_dir=cache, device=device)

    if cfg.test_i2i:  # SIIR: query image -> supporting-set images
        qi, ii = feats(test_rows, "image", t.image_field), feats(train_rows, "image", t.image_field)
        out["SIIR"] = lambda k: similarity_retrieval(qi, ii, k, rev)
    if cfg.test_i2t:  # SITR: query image -> supporting-set ICD texts
        qi, it = feats(test_rows, "image", t.image_field), feats(train_rows, "text", t.sim_text_field)
        out["SITR"] = lambda k: similarity_retrieval(qi, it, k, rev)
    if cfg.test_t2t:  # STTR: query text -> ICD texts (captioning: the test GT single_caption, as the original)
        qt, it2 = feats(test_rows, "text", t.sim_text_field), feats(train_rows, "text", t.sim_text_field)
        out["STTR"] = lambda k: similarity_retrieval(qt, it2, k, rev)
    if cfg.get("test_zero_shot"):
        out["zero_shot"] = lambda k: [[] for _ in test_rows]
    if not out:
        raise VlreproError("no retriever enabled", fix="set test_lever_lm=true or one of test_random/test_t2t/test_i2t/test_i2i")
    return out


def icl_predictions(lvlm, cfg: DictConfig, train_rows: list[dict], test_rows: list[dict], ice_idx: list[list[int]]) -> list[dict]:
    """LVLM generation with each query's ICDs (batches of ``inference_bs``) -> per-sample records."""
    from tqdm import tqdm

    task = str(cfg.task.name)
    style = lvlm.style(task)
    gen_args = OmegaConf.to_container(cfg.task.gen_args, resolve=True)
    recs = []
    bs = int(cfg.inference_bs)
    for i in tqdm(range(0, len(test_rows), bs), desc="icl", unit="batch", dynamic_ncols=True):
        batch = test_rows[i : i + bs]
        icds = [[train_rows[j] for j in ice_idx[i + b]] for b in range(len(batch))]
        texts = [generation_text(style, ic, q) for ic, q in zip(icds, batch, strict=False)]
        images = [images_of(sequence_items(style, ic, q, query_label=False)) for ic, q in zip(icds, batch, strict=False)]
        outs = lvlm.generate(texts, images, **gen_args)
        for q, ic_ids, o in zip(batch, ice_idx[i : i + bs], outs, strict=False):
            rec = {"idx": q["idx"], "ice_idx": list(ic_ids), "output": o, "prediction": postprocess(lvlm.family, task, o)}
            for f in ("image_id", "question_id", "single_caption", "question", "answer"):
                if f in q:
                    rec[f] = q[f]
            recs.append(rec)
    return recs


def score(task: str, test_rows: list[dict], recs: list[dict], tokenize: str | bool = "auto") -> float:
    """CIDEr ×100 (captioning) or VQA accuracy (VQAv2) of the records."""
    if task == "caption":
        from vlrepro.shared.metrics.caption import caption_scores

        refs = {r["image_id"]: r["captions"] for r in test_rows}
        preds = {r["image_id"]: r["prediction"] for r in recs}
        tok = shutil.which("java") is not None if tokenize == "auto" else bool(tokenize)
        return 100.0 * caption_scores(refs, preds, metrics=("BLEU", "CIDEr"), tokenize=tok)["CIDEr"]
    from vlrepro.shared.metrics.vqa import vqa_accuracy

    anns = [{"question_id": r["question_id"], "image_id": r["image_id"], "question_type": r["question_type"],
             "answer_type": r["answer_type"], "multiple_choice_answer": r["answer"],
             "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1} for j, a in enumerate(r["answers"])]}
            for r in test_rows]
    return float(vqa_accuracy(anns, {r["question_id"]: r["prediction"] for r in recs}, subset=True)["overall"])


def run_eval(cfg: DictConfig, lvlm=None) -> list[dict]:
    """The ``eval`` verb; returns the results rows (also written to results.json)."""
    from .lvlm import load_lvlm

    torch.manual_seed(int(cfg.seed))
    train_rows = limit(load_rows(cfg.dataset, "train"), int(cfg.index_data_num))
    test_rows = load_rows(cfg.dataset, "val")
    if cfg.dataset.get("val_subset_num"):
        import random

        k = min(int(cfg.dataset.val_subset_num), len(test_rows))
        keep = sorted(random.Random(int(cfg.dataset.val_subset_seed)).sample(range(len(test_rows)), k))
        test_rows = [test_rows[i] for i in keep]
    test_rows = limit(test_rows, int(cfg.test_data_num))
    device = "cuda" if str(cfg.device).startswith("cuda") else "cpu"
    run_dir = result_root(cfg) / "icl_inference" / str(cfg.infer_model.name) / str(cfg.task.name) / str(cfg.ex_name)
    retr = retrievals(cfg, train_rows, test_rows, device)
    if lvlm is None:
        lvlm = load_lvlm(cfg.infer_model, device, str(cfg.precision))
    stamp = time.strftime("%Y-%m-%d_%H:%M:%S")
    metrics: dict[str, dict[str, float]] = {}
    rows = []
    task = str(cfg.task.name)
    for name, fn in retr.items():
        for shot in [int(s) for s in cfg.shot_num_list]:
            meta = run_dir / "generation_metainfo" / f"{name}-test_data_num={len(test_rows)}-shot_num={shot}.json"
            if meta.is_file():  # resume: this (retriever, shot) was finished by an earlier run
                recs = read_json(meta, what="ICL outputs")
            else:
                recs = icl_predictions(lvlm, cfg, train_rows, test_rows, fn(shot))
                write_json_atomic(meta, recs)
            value = score(task, test_rows, recs, cfg.get("caption_ptb_tokenize", "auto"))
            metrics.setdefault(f"{stamp}-test_data_num={len(test_rows)}-{name}", {})[f"shot_num={shot}"] = value
            print(f"[eval] {name} shot={shot}: {'CIDEr' if task == 'caption' else 'VQA acc'} = {value:.2f}", flush=True)
            rows.append(result_row(package="vlrepro-leverlm", paper=PAPER, task=task, dataset=str(cfg.dataset.name),
                                   split="val", n=len(test_rows), metric="CIDEr" if task == "caption" else "vqa_accuracy",
                                   value=value, model=str(cfg.infer_model.name), device=str(cfg.device),
                                   config=OmegaConf.to_container(cfg, resolve=True), retriever=name, shot_num=shot))
    prev = read_json(run_dir / "metrics.json", what="metrics") if (run_dir / "metrics.json").is_file() else {}
    write_json_atomic(run_dir / "metrics.json", {**prev, **metrics})
    for name in retr:  # average over shots, the paper's "Avg 1~8" figure
        vals = [r["value"] for r in rows if r["retriever"] == name]
        fam = str(cfg.infer_model.family)
        rows.append(result_row(package="vlrepro-leverlm", paper=PAPER, task=task, dataset=str(cfg.dataset.name), split="val",
                               n=len(test_rows), metric=("CIDEr" if task == "caption" else "vqa_accuracy") + "_avg_shots",
                               value=sum(vals) / len(vals), model=str(cfg.infer_model.name), device=str(cfg.device),
                               config={"shot_num_list": list(cfg.shot_num_list)}, retriever=name,
                               paper_value=PAPER_VALUES.get((task, fam, name)) if cfg.infer_model.get("paper_model") else None))
    write_results(run_dir, rows)
    print(f"[eval] wrote {run_dir / 'results.json'}", flush=True)
    return rows


def dumps(rows) -> str:
    return json.dumps(rows, indent=1)
