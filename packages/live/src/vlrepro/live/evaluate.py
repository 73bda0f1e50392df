"""Evaluation (spec §1.5, §5): the ICV model and the paper's baselines, scored with the VQA metric.

Methods (``eval.methods``):
- ``icv``: zero-shot prompt (instruction, image, question) with the trained vectors hooked in;
- ``zero_shot``: the same prompt, no hooks;
- ``icl``: k-shot in-context learning for each k in ``eval.icl.shots``, demonstrations drawn from
  the train split at random (seeded -- the original's draw is not) or retrieved by CLIP image
  similarity (``eval.icl.retrieval=i2i``, RICES).

Generation: 3 beams, <= 5 new tokens, length_penalty 0, left padding; the continuation is cut
at "Question"/"Answer"/"Short" and ", " (``vlrepro.shared.metrics.postprocess_vqa_generation``).
Predictions are written in the official VQA results format (``[{"question_id", "answer"}]``);
an interrupted run resumes from ``<file>.partial.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm
from vlrepro.shared.atomic import write_json_atomic
from vlrepro.shared.data import VQARecord
from vlrepro.shared.metrics.vqa import postprocess_vqa_generation, vqa_accuracy
from vlrepro.shared.results import result_row, write_results

from . import PAPER
from .checkpoint import CHECKPOINT_NAME, load_icv
from .data import answer_label, load_eval_records, load_split, shared_name
from .method import GlobalICVEncoder, icv_hooks
from .models import LMMAdapter
from .prompts import VQAPrompt
from .train import build_adapter, prompt_from_cfg, resolved, run_dir

#: spec §7 (MimIC Table 1, verified): (lmm, dataset, method) -> VQA accuracy
PAPER_VALUES: dict[tuple[str, str, str], float] = {
    ("idefics-9B", "vqav2", "zero_shot"): 29.25, ("idefics-9B", "okvqa", "zero_shot"): 30.54,
    ("idefics-9B", "vqav2", "icl32_random"): 56.18, ("idefics-9B", "okvqa", "icl32_random"): 48.48,
    ("idefics-9B", "vqav2", "icl32_i2i"): 58.07, ("idefics-9B", "okvqa", "icl32_i2i"): 51.11,
    ("idefics-9B", "vqav2", "icv"): 53.71, ("idefics-9B", "okvqa", "icv"): 46.05,
    ("idefics2-8B-base", "vqav2", "zero_shot"): 55.39, ("idefics2-8B-base", "okvqa", "zero_shot"): 43.08,
    ("idefics2-8B-base", "vqav2", "icl8_random"): 66.20, ("idefics2-8B-base", "okvqa", "icl8_random"): 57.68,
    ("idefics2-8B-base", "vqav2", "icl8_i2i"): 66.44, ("idefics2-8B-base", "okvqa", "icl8_i2i"): 55.73,
    ("idefics2-8B-base", "vqav2", "icv"): 67.60, ("idefics2-8B-base", "okvqa", "icv"): 54.86,
}


def generate_predictions(
    adapter: LMMAdapter,
    records: Sequence[VQARecord],
    prompt_fn: Callable[[int, Any], list],
    *,
    bs: int,
    generation: dict[str, Any],
    encoder: GlobalICVEncoder | None = None,
    layer_names: Sequence[str] = (),
    partial_path: Path | None = None,
    desc: str = "eval",
    progress: bool = True,
) -> dict[int, str]:
    """``{question_id: answer}`` for ``records``; ``prompt_fn(i, image)`` builds record i's item list.

    With ``encoder`` the vectors are hooked in for the whole ``generate`` call (prompt and every
    decoding step). Finished batches are appended to ``partial_path`` so a rerun skips them.
    """
    done: dict[int, str] = {}
    if partial_path is not None and partial_path.is_file():
        for line in partial_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done[int(row["question_id"])] = row["answer"]
    todo = [i for i, r in enumerate(records) if r.question_id not in done]
    hooks = icv_hooks(adapter.model, layer_names, encoder) if encoder is not None else nullcontext()
    with hooks:
        for start in tqdm(range(0, len(todo), bs), desc=desc, disable=not progress, unit="batch"):
            idx = todo[start : start + bs]
            batch = [prompt_fn(i, records[i].load_image()) for i in idx]
            texts = adapter.generate(batch, **generation)
            new = {records[i].question_id: postprocess_vqa_generation(t) for i, t in zip(idx, texts, strict=False)}
            done.update(new)
            if partial_path is not None:
                with partial_path.open("a", encoding="utf-8") as f:
                    for qid, ans in new.items():
                        f.write(json.dumps({"question_id": qid, "answer": ans}) + "\n")
    return done


def demonstration_indices(cfg: DictConfig, records: Sequence[VQARecord], pool: Sequence[VQARecord], k: int, out: Path) -> list[list[int]]:
    """Per query, ``k`` train indices: seeded random draw or RICES (CLIP image -> image)."""
    from vlrepro.shared.retrieval import clip_features, retrieve_demonstrations

    mode = str(cfg.eval.icl.retrieval)
    if mode == "random":
        return retrieve_demonstrations("random", k, n_queries=len(records), pool_size=len(pool), seed=int(cfg.eval.icl.seed))
    if mode != "i2i":
        from vlrepro.shared.errors import VlreproError

        raise VlreproError(f"eval.icl.retrieval={mode!r} is not known", fix="use random or i2i (RICES)")
    model = str(cfg.eval.icl.clip_model)
    cache = out / "clip_cache"
    q = clip_features(model, [r.image_path for r in records], kind="image", cache_dir=cache, device=cfg.device)
    p = clip_features(model, [r.image_path for r in pool], kind="image", cache_dir=cache, device=cfg.device)
    return retrieve_demonstrations("i2i", k, n_queries=len(records), pool_size=len(pool), query_image=q, pool_image=p)


def evaluate(cfg: DictConfig, *, progress: bool = True, adapter: LMMAdapter | None = None,
             train_info: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run every method of ``eval.methods``; write predictions and ``results.json``; return the rows."""
    ds_cfg = cfg.data_cfg.task.datasets
    records, annotations, split = load_eval_records(ds_cfg, seed=int(cfg.seed))  # missing data fails first
    methods = list(cfg.eval.methods)
    pool = load_split(ds_cfg, "train") if "icl" in methods else []
    out = run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    icv_path = Path(cfg.eval.icv_cpk) if cfg.eval.get("icv_cpk") else out / CHECKPOINT_NAME
    icv = load_icv(icv_path) if "icv" in methods else None  # a missing checkpoint fails before the model loads
    adapter = adapter or build_adapter(cfg)
    prompt: VQAPrompt = prompt_from_cfg(cfg)
    generation = dict(OmegaConf.to_container(cfg.eval.generation))
    dataset = shared_name(ds_cfg.name)
    rows = []

    def run(method: str, prompt_fn, **kw) -> None:
        partial = out / f"predictions_{method}.partial.jsonl"
        preds = generate_predictions(adapter, records, prompt_fn, bs=int(cfg.eval.bs), generation=generation,
                                     partial_path=partial, desc=method, progress=progress, **kw)
        results = [{"question_id": r.question_id, "answer": preds[r.question_id]} for r in records]
        write_json_atomic(out / f"predictions_{method}.json", results)
        partial.unlink(missing_ok=True)
        scores = vqa_accuracy(annotations, results, mode=str(cfg.eval.metric_mode))
        print(f"{method}: VQA accuracy {scores['overall']:.2f} on {len(records)} {dataset} questions")
        rows.append(result_row(
            package="vlrepro-live", paper=PAPER, task="vqa", dataset=dataset, split=split, n=len(records),
            metric="vqa_accuracy", value=scores["overall"], model=f"{cfg.lmm.name}+{method}", device=str(cfg.device),
            config=resolved(cfg), paper_value=PAPER_VALUES.get((str(cfg.lmm.name), dataset, method)),
            train=train_info if method == "icv" else None, method=method,
            per_answer_type=scores["perAnswerType"],
        ))

    for method in methods:
        if method == "icv":
            encoder, layer_names, _ = icv
            module_names = {n for n, _ in adapter.model.named_modules()}
            if any(n not in module_names for n in layer_names) or encoder.icv.shape[-1] != adapter.hidden_size:
                from vlrepro.shared.errors import VlreproError

                raise VlreproError(f"the checkpoint hooks {layer_names[0]}... which {cfg.lmm.name} does not have",
                                   fix="evaluate with the lmm the vector was trained on")
            run("icv", lambda i, img: prompt.inference_prompt(img, records[i].question),
                encoder=encoder.to(adapter.device), layer_names=layer_names)
        elif method == "zero_shot":
            run("zero_shot", lambda i, img: prompt.inference_prompt(img, records[i].question))
        elif method == "icl":
            for k in cfg.eval.icl.shots:
                demo_idx = demonstration_indices(cfg, records, pool, int(k), out)

                def icl_prompt(i, img, demo_idx=demo_idx):
                    demos = [(pool[j].load_image(), pool[j].question, answer_label(pool[j])) for j in demo_idx[i]]
                    return prompt.inference_prompt(img, records[i].question, demos)

                run(f"icl{int(k)}_{cfg.eval.icl.retrieval}", icl_prompt)
        else:
            from vlrepro.shared.errors import VlreproError

            raise VlreproError(f"eval.methods has {method!r}", fix="choose from icv, zero_shot, icl")
    write_results(out, rows)
    print(f"wrote {out / 'results.json'}")
    return rows


def run_eval(cfg: DictConfig) -> int:
    evaluate(cfg)
    return 0
