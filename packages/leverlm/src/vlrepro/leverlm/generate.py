"""``generate``: build D_M, the Lever-LM training data, by InfoScore beam search (spec §1a).

Anchors are a seeded sample of the supporting set; each gets a candidate set from the sampler and
``beam_size`` ICD sequences. Work is split into contiguous shards (one per GPU of ``gpu_ids``, or
``num_procs`` CPU processes); each shard rewrites its own file under
``generated_data/sub_proc_data/`` after every anchor, so an interrupted run resumes where it stopped
without losing or repeating an anchor. The shards are then merged into the original JSON layout::

    {"<anchor idx>": {"id_list": [[icd…, anchor] × beam_size], "score_list": [float × beam_size]}}
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from vlrepro.shared.atomic import write_json_atomic
from vlrepro.shared.errors import VlreproError, read_json
from vlrepro.shared.paths import root_dir

from .data import limit, load_rows
from .method import InfoScorer, beam_search
from .retrieval import candidate_sets, clip_features, sample_anchors


def result_root(cfg: DictConfig) -> Path:
    """``--out`` if given, else ``result_dir``, else ``RESULT_DIR`` / ``$VLREPRO_DATA/results``."""
    if cfg.get("out_dir"):
        return Path(str(cfg.out_dir))
    return root_dir("results", cfg.get("result_dir"))


def dm_name(cfg: DictConfig) -> str:
    """The original's D_M file name (spec §1a, "Output")."""
    return (f"{cfg.task.name}-{cfg.dataset.name}-{cfg.infer_model.name}-{cfg.sampler.sampler_name}"
            f"-scorer:{cfg.scorer}-construct_order:{cfg.construct_order}-beam_size:{cfg.beam_size}"
            f"-few_shot:{cfg.few_shot_num}-candidate_num:{cfg.sampler.candidate_num}-sample_num:{cfg.sample_num}")


def shard_bounds(n: int, world: int) -> list[tuple[int, int]]:
    """Contiguous chunks of ⌊n/world⌋ anchors; the last rank takes the rest (as the original)."""
    size = n // world
    return [(r * size, n if r == world - 1 else (r + 1) * size) for r in range(world)]


def _anchor_cache(cfg: DictConfig, n_index: int) -> list[int]:
    path = result_root(cfg) / "cache" / f"{cfg.dataset.name}-anchor_sample_num:{cfg.sample_num}-seed:{cfg.seed}.json"
    if path.is_file():
        return [int(a) for a in read_json(path, what="anchor cache")]
    anchors = sample_anchors(n_index, int(cfg.sample_num), int(cfg.seed))
    write_json_atomic(path, anchors)
    return anchors


def _features(cfg: DictConfig, rows: list[dict], kind: str) -> torch.Tensor:
    field = cfg.task.image_field if kind == "image" else cfg.task.sim_text_field
    return clip_features(str(cfg.sampler.clip_name), kind, [r[field] for r in rows],
                         cache_dir=result_root(cfg) / "cache" / "features", device=_device(cfg, 0))


def _device(cfg: DictConfig, rank: int) -> str:
    if str(cfg.device).startswith("cuda"):
        ids = list(cfg.gpu_ids)
        return f"cuda:{ids[rank]}"
    return "cpu"


def _candidates(cfg: DictConfig, rows: list[dict], anchors: list[int]) -> dict[int, list[int]]:
    kind = str(cfg.sampler.kind)
    path = result_root(cfg) / "cache" / f"{cfg.dataset.name}-{cfg.sampler.sampler_name}-candidate_num:{cfg.sampler.candidate_num}" \
                                        f"-sample_num:{cfg.sample_num}-seed:{cfg.seed}.json"
    if path.is_file():  # the cache name carries the sampler (the original's f-string dropped it)
        return {int(k): v for k, v in read_json(path, what="candidate cache").items()}
    img = _features(cfg, rows, "image") if kind in ("img_sim", "mix") else None
    txt = _features(cfg, rows, "text") if kind in ("text_sim", "mix") else None
    cands = candidate_sets(kind, anchors, len(rows), int(cfg.sampler.candidate_num), int(cfg.seed), img, txt)
    write_json_atomic(path, {str(k): v for k, v in cands.items()})
    return cands


def make_scorer(cfg: DictConfig, lvlm, rows: list[dict]):
    """``score_fn(seq, candidates, order) -> scores`` for ``cfg.scorer`` ∈ {infoscore, cider}."""
    style = lvlm.style(str(cfg.task.name))
    if cfg.scorer == "infoscore":
        return InfoScorer(lvlm, style, rows, batch_size=int(cfg.batch_size), mask_era=str(cfg.get("mask_era", "paper_era")))
    if cfg.scorer == "cider":
        from .cider_scorer import CiderScorer

        if cfg.task.name != "caption":
            raise VlreproError("scorer=cider is for captioning only", fix="use scorer=infoscore for vqa")
        return CiderScorer(lvlm, style, rows, batch_size=int(cfg.batch_size), gen_args=dict(cfg.task.gen_args))
    raise VlreproError(f"unknown scorer {cfg.scorer!r}", fix="use infoscore or cider")


def run_shard(cfg: DictConfig, rank: int, anchors: list[int], cands: dict[int, list[int]], rows: list[dict],
              sub_file: Path, lvlm=None) -> dict[str, Any]:
    """Beam search over one shard's anchors, rewriting ``sub_file`` after each (resumable)."""
    from tqdm import tqdm

    from .lvlm import load_lvlm

    done: dict[str, Any] = read_json(sub_file, what="partial D_M shard") if sub_file.is_file() else {}
    todo = [a for a in anchors if str(a) not in done]
    budget = cfg.get("max_anchors_per_run")
    if budget is not None and int(budget) >= 0:
        todo = todo[: int(budget)]
    if not todo:
        return done
    if lvlm is None:
        time.sleep(float(cfg.sleep_time) * rank if str(cfg.device).startswith("cuda") else 0.0)
        lvlm = load_lvlm(cfg.infer_model, _device(cfg, rank), str(cfg.precision))
    score_fn = make_scorer(cfg, lvlm, rows)
    bar = tqdm(total=len(anchors), initial=len(anchors) - len([a for a in anchors if str(a) not in done]),
               desc=f"generate rank {rank}", unit="anchor", dynamic_ncols=True)
    for a in todo:
        res = beam_search(int(a), cands[int(a)], score_fn, beam_size=int(cfg.beam_size), few_shot_num=int(cfg.few_shot_num),
                          construct_order=str(cfg.construct_order), right_store=str(cfg.get("right_store", "original")))
        done[str(a)] = res.to_json()
        write_json_atomic(sub_file, done, indent=None)  # after every anchor: a kill loses at most the current one
        bar.update(1)
    bar.close()
    return done


def _spawn_entry(rank: int, cfg_yaml: str, shards: list, cands: dict, rows: list, files: list) -> None:
    cfg = OmegaConf.create(cfg_yaml)
    run_shard(cfg, rank, shards[rank], cands, rows, Path(files[rank]))


def run_generate(cfg: DictConfig, lvlm=None) -> Path:
    """The ``generate`` verb; returns the merged D_M file. ``lvlm`` lets tests pass a loaded model."""
    torch.manual_seed(int(cfg.seed))
    rows = limit(load_rows(cfg.dataset, "train"), int(cfg.get("index_data_num", -1)))
    anchors = _anchor_cache(cfg, len(rows))
    cands = _candidates(cfg, rows, anchors)
    name = dm_name(cfg)
    out_dir = result_root(cfg) / "generated_data"
    out_file = out_dir / f"{name}.json"
    world = len(cfg.gpu_ids) if str(cfg.device).startswith("cuda") else int(cfg.get("num_procs", 1))
    bounds = shard_bounds(len(anchors), world)
    files = [out_dir / "sub_proc_data" / f"{name}_rank:{r}_({s}, {e}).json" for r, (s, e) in enumerate(bounds)]
    shards = [anchors[s:e] for s, e in bounds]
    print(f"[generate] {len(anchors)} anchors, {world} shard(s), {cfg.sampler.candidate_num} candidates, "
          f"beam {cfg.beam_size}, {cfg.few_shot_num} shots, order {cfg.construct_order} -> {out_file}", flush=True)
    if world == 1 or lvlm is not None:
        for r in range(world):
            run_shard(cfg, r, shards[r], cands, rows, files[r], lvlm=lvlm)
    else:
        import torch.multiprocessing as mp

        mp.spawn(_spawn_entry, args=(OmegaConf.to_yaml(cfg), shards, cands, rows, [str(f) for f in files]), nprocs=world, join=True)
    merged: dict[str, Any] = {}
    for f, shard in zip(files, shards, strict=False):
        part = read_json(f, what="D_M shard") if f.is_file() else {}
        if any(str(a) not in part for a in shard):
            missing = sum(str(a) not in part for a in shard)
            print(f"[generate] {f.name}: {missing} anchor(s) still to do; run again to resume", flush=True)
            return f
        merged.update(part)
    ordered = {str(a): merged[str(a)] for a in anchors}
    write_json_atomic(out_file, ordered)
    print(f"[generate] wrote {out_file} ({len(ordered)} anchors)", flush=True)
    return out_file


def load_dm(path: str | Path) -> dict[int, dict]:
    """Read a D_M file, checking its layout."""
    doc = read_json(path, what="Lever-LM training data (D_M)", fix="run `vlrepro-leverlm generate` first or set data_files")
    if not isinstance(doc, dict):
        raise VlreproError(f"{path}: expected an object keyed by anchor idx")
    out = {}
    for k, v in doc.items():
        if not isinstance(v, dict) or "id_list" not in v or "score_list" not in v:
            raise VlreproError(f"{path}: anchor {k} lacks id_list/score_list")
        out[int(k)] = v
    return out


def dumps_cfg(cfg: DictConfig) -> str:
    return json.dumps(OmegaConf.to_container(cfg, resolve=True))
