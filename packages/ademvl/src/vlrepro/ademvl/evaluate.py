"""Evaluation (spec §5): ScienceQA, COCO caption and MME, scored through ``vlrepro.shared.metrics``.

* ``task=sqa``: test split, prompt = training input + ``"The answer is"``, greedy, one new token;
  the first capital letter is the prediction (none = wrong). The original evaluates with QCM-A and
  captions although it trains with CQM-A without: ``eval_prompt_format``/``eval_use_caption``
  select either (default: the original's QCM-A with captions). Writes ``preds.json`` ({pid: index},
  readable by ``vlrepro eval scienceqa``) and ``eval_log.txt``.
* ``task=caption``: prompt ``"a picture of"``, greedy, 20 tokens, the text after "picture of";
  ``caption_split`` selects Karpathy val (the original's choice) or test (the paper's table).
  Writes ``test_result.json`` [{image_id, caption}].
* ``task=mme``: prompt ``"Instruction: {q}\\nResponse:"``, greedy, 10 tokens; writes
  ``output/<subtask>.txt`` (``image\\tquestion\\tgt\\tpred``, the MME eval_tool layout, readable by
  ``vlrepro eval mme --results-dir``), scored as perception / cognition totals.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from vlrepro.shared.data import load_karpathy, load_mme, load_scienceqa
from vlrepro.shared.data.mme import mme_root
from vlrepro.shared.errors import VlreproError, read_json
from vlrepro.shared.results import result_row, write_results

from . import PAPER
from .build import create_model, plain_config, resolve_device, scienceqa_root
from .data import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPTIONS,
    sqa_eval_prompt,
    to_tensor,
    with_captions,
)
from .method import ADEMVL
from .train import iter_batches, latest_checkpoint, load_adapter_file, seed_everything

PACKAGE = "vlrepro-ademvl"
#: paper numbers (spec §7): Table I (ScienceQA), README model zoo (7B caption/MME), Tables II/III (13B)
PAPER_VALUES: dict[tuple[str, str, str], float] = {
    ("sqa", "7B", "acc_avg"): 93.85, ("sqa", "13B", "acc_avg"): 94.55,
    ("caption", "7B", "Bleu_4"): 38.5, ("caption", "7B", "CIDEr"): 130.1,
    ("caption", "13B", "Bleu_4"): 38.5, ("caption", "13B", "CIDEr"): 133.2,
    ("mme", "7B", "perception"): 969.7, ("mme", "7B", "cognition"): 258.9,
    ("mme", "13B", "perception"): 966.2, ("mme", "13B", "cognition"): 270.7,
}
SQA_TEST_SIZE = 4241
_LETTER = re.compile(r"([A-Z])")


def first_letter_index(text: str, n_choices: int) -> int:
    """The original ``eval_sqa``: first ``[A-Z]`` in the output, its option index, else −1."""
    found = _LETTER.findall(text)
    if not found or found[0] not in OPTIONS[:n_choices]:
        return -1
    return OPTIONS.index(found[0])


def caption_after_prompt(text: str) -> str:
    """``eval_caption``: keep what follows "picture of", else the whole output."""
    return text.split("picture of", 1)[1].strip() if "picture of" in text else text.strip()


def _images(paths: list[Path | None], size: int, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    from vlrepro.shared.data import open_rgb

    tensors, flags = [], []
    for p in paths:
        if p is None:
            tensors.append(torch.zeros(3, size, size))
            flags.append(0)
        else:
            tensors.append(to_tensor(open_rgb(p), size, mean, std))
            flags.append(1)
    return torch.stack(tensors), torch.tensor(flags)


# ----------------------------------------------------------------------------- tasks
def eval_sqa(model: ADEMVL, cfg: DictConfig, out_dir: Path, records: list, *, log=print) -> tuple[list[dict], dict]:
    from tqdm import tqdm
    from vlrepro.shared.metrics.scienceqa import scienceqa_accuracy

    size = model.clip.image_size
    preds: dict[str, int] = {}
    batches = list(iter_batches(records, int(cfg.batch_size)))
    for batch in tqdm(batches, desc="ScienceQA", disable=not cfg.get("progress", True)):
        prompts = [sqa_eval_prompt(r, str(cfg.eval_prompt_format), bool(cfg.eval_use_caption)) for r in batch]
        images, flags = _images([r.image_path for r in batch], size, IMAGENET_MEAN, IMAGENET_STD)
        texts = model.generate(prompts, images, flags, max_gen_len=int(cfg.get("sqa_max_gen_len", 1)),
                               max_total_len=int(cfg.max_seq_len))
        for r, t in zip(batch, texts, strict=False):
            preds[r.pid] = first_letter_index(t, len(r.choices))
    problems = {r.pid: {"choices": r.choices, "answer": r.answer, "hint": r.hint, "image": r.image_path is not None,
                        "subject": r.subject, "grade": r.grade} for r in records}
    scores = scienceqa_accuracy(problems, preds)
    (out_dir / "preds.json").write_text(json.dumps(preds), encoding="utf-8")
    (out_dir / "eval_log.txt").write_text(str(scores) + "\n", encoding="utf-8")
    log(sqa_table(scores))
    full = len(records) == SQA_TEST_SIZE
    rows = [dict(task="scienceqa", dataset="scienceqa", split=str(cfg.get("split", "test")), n=len(records),
                 metric=key, value=float(scores[key]), extra={k: scores[k] for k in scores if k != key})
            for key in ("acc_avg",)]
    for k in ("acc_natural", "acc_social", "acc_language", "acc_has_text", "acc_has_image", "acc_no_context",
              "acc_grade_1_6", "acc_grade_7_12"):
        if scores.get(k) is not None:
            rows.append(dict(task="scienceqa", dataset="scienceqa", split=str(cfg.get("split", "test")), n=len(records),
                             metric=k, value=float(scores[k])))
    for r in rows:
        r["paper_key"] = ("sqa", r["metric"]) if full else None
    return rows, scores


def sqa_table(scores: dict[str, Any]) -> str:
    keys = ("acc_natural", "acc_social", "acc_language", "acc_has_text", "acc_has_image", "acc_no_context",
            "acc_grade_1_6", "acc_grade_7_12", "acc_avg")
    head = "| NAT | SOC | LAN | TXT | IMG | NO | G1-6 | G7-12 | Avg |"

    def fmt(v: Any) -> str:
        return "–" if v is None else f"{v:.2f}"

    return "\n".join([head, "|" + "---|" * 9, "| " + " | ".join(fmt(scores.get(k)) for k in keys) + " |"])


def caption_eval_items(cfg: DictConfig) -> tuple[list[tuple[int, Path]], dict[int, list[str]]]:
    """(image id, image path) and references of the Karpathy ``caption_split``.

    With ``data_root``: BLIP's ``coco_karpathy_{split}.json`` + ``coco_karpathy_{split}_gt.json`` (COCO
    format) under ``<data_root>/coco_caption``; otherwise Karpathy's ``dataset_coco.json``.
    """
    split = str(cfg.caption_split)
    if cfg.get("data_root"):
        root = Path(str(cfg.data_root))
        fix = f"download coco_karpathy_{split}.json and coco_karpathy_{split}_gt.json from BLIP's release into {root / 'coco_caption'}"
        rows = read_json(root / "coco_caption" / f"coco_karpathy_{split}.json", what="BLIP Karpathy file", fix=fix)
        gt = read_json(root / "coco_caption" / f"coco_karpathy_{split}_gt.json", what="BLIP Karpathy ground truth", fix=fix)
        refs: dict[int, list[str]] = {}
        for a in gt["annotations"]:
            refs.setdefault(int(a["image_id"]), []).append(str(a["caption"]))
        items = []
        for r in rows:
            iid = int(Path(r["image"]).stem.split("_")[-1])
            items.append((iid, root / "images" / r["image"]))
        return items, refs
    records = load_karpathy(split=split)
    return [(r.image_id, r.image_path) for r in records], {r.image_id: list(r.captions) for r in records}


def eval_caption(model: ADEMVL, cfg: DictConfig, out_dir: Path, items, refs, *, log=print) -> tuple[list[dict], dict]:
    from tqdm import tqdm
    from vlrepro.shared.metrics.caption import caption_scores

    size = model.clip.image_size
    preds: dict[int, str] = {}
    for batch in tqdm(list(iter_batches(items, int(cfg.batch_size))), desc="caption", disable=not cfg.get("progress", True)):
        images, flags = _images([p for _, p in batch], size, CLIP_MEAN, CLIP_STD)
        texts = model.generate(["a picture of"] * len(batch), images, flags, max_gen_len=20,
                               max_total_len=int(cfg.max_seq_len))
        for (iid, _), t in zip(batch, texts, strict=False):
            preds[iid] = caption_after_prompt(t)
    (out_dir / "test_result.json").write_text(json.dumps([{"image_id": k, "caption": v} for k, v in preds.items()]),
                                              encoding="utf-8")
    scores = caption_scores(refs, preds, metrics=tuple(cfg.caption_metrics), tokenize=bool(cfg.caption_tokenize))
    log(json.dumps(scores))
    # ×100, the paper's scale (BLEU-4 38.5, CIDEr 130.1); the scorer returns fractions
    rows = [dict(task="caption", dataset="coco_karpathy", split=str(cfg.caption_split), n=len(preds), metric=k,
                 value=100.0 * float(v), paper_key=("caption", k) if str(cfg.caption_split) == "test" else None)
            for k, v in scores.items()]
    return rows, scores


def eval_mme(model: ADEMVL, cfg: DictConfig, out_dir: Path, records, *, log=print) -> tuple[list[dict], dict]:
    from tqdm import tqdm
    from vlrepro.shared.metrics.mme import mme_scores

    size = model.clip.image_size
    rows_out: list[dict[str, str]] = []
    for batch in tqdm(list(iter_batches(records, int(cfg.batch_size))), desc="MME", disable=not cfg.get("progress", True)):
        images, flags = _images([r.image_path for r in batch], size, IMAGENET_MEAN, IMAGENET_STD)
        prompts = [f"Instruction: {r.question}\nResponse:" for r in batch]
        texts = model.generate(prompts, images, flags, max_gen_len=10, max_total_len=int(cfg.max_seq_len))
        for r, t in zip(batch, texts, strict=False):
            pred = t.replace("\n", " ").replace("\t", " ").strip()
            rows_out.append({"subtask": r.subtask, "image": r.image_name, "question": r.question, "gt": r.answer,
                             "pred": pred})
    folder = out_dir / "output"
    folder.mkdir(parents=True, exist_ok=True)  # exist_ok: a rerun must not crash (the original's eval_mme does)
    by_task: dict[str, list[str]] = {}
    for r in rows_out:
        by_task.setdefault(r["subtask"], []).append(f"{r['image']}\t{r['question']}\t{r['gt']}\t{r['pred']}")
    for task, lines in by_task.items():
        (folder / f"{task}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    scores = mme_scores(rows_out)
    log(json.dumps({k: scores[k] for k in ("perception", "cognition", "total")}))
    full = not scores["missing_subtasks"]
    rows = [dict(task="mme", dataset="mme", split="test", n=len(rows_out), metric=k, value=float(scores[k]),
                 paper_key=("mme", k) if full else None) for k in ("perception", "cognition")]
    return rows, scores


# ----------------------------------------------------------------------------- entry
def load_task_data(cfg: DictConfig) -> Any:
    """Read the evaluation data first, so a missing file fails before any weights load."""
    task = str(cfg.task)
    if task == "sqa":
        records = load_scienceqa(str(cfg.split), root=scienceqa_root(cfg), captions=cfg.get("caption_file") is None)
        records = with_captions(records, cfg.get("caption_file"))
        if cfg.get("limit"):
            records = records[: int(cfg.limit)]
        return records
    if task == "caption":
        items, refs = caption_eval_items(cfg)
        if cfg.get("limit"):
            items = items[: int(cfg.limit)]
        return items, refs
    if task == "mme":
        root = Path(str(cfg.data_root)) / "MME_Benchmark_release_version" if cfg.get("data_root") else mme_root()
        records = load_mme(root)
        if cfg.get("limit"):
            records = records[: int(cfg.limit)]
        return records
    raise VlreproError(f"unknown eval task {task!r}", fix="use task=sqa, caption or mme")


def resolve_adapter(cfg: DictConfig) -> Path | None:
    """``adapter_path``: a checkpoint file, or a run folder (``checkpoint`` names the file; default the newest)."""
    if not cfg.get("adapter_path"):
        return None
    p = Path(str(cfg.adapter_path))
    if p.is_file():
        return p
    if cfg.get("checkpoint"):
        return p / str(cfg.checkpoint)
    latest = latest_checkpoint(p) if p.is_dir() else None
    if latest is None:
        if p.is_dir():
            originals = sorted(p.glob("checkpoint-*.pth"), key=lambda q: int(re.sub(r"\D", "", q.stem) or 0))
            if originals:
                return originals[-1]
        raise VlreproError(f"no checkpoint in {p}", fix="pass adapter_path=<checkpoint file> or checkpoint=<file name>")
    return latest.with_name(latest.name.replace(".state.pt", ".safetensors"))


def evaluate(cfg: DictConfig, *, model: ADEMVL | None = None, log=print) -> list[dict[str, Any]]:
    """Run one evaluation task; returns the results rows (also written to ``out_dir/results.json``)."""
    data = load_task_data(cfg)
    seed_everything(int(cfg.seed))
    device = resolve_device(cfg)
    out_dir = Path(str(cfg.out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = create_model(cfg, device)
        adapter = resolve_adapter(cfg)
        if adapter is not None:
            try:
                model.load_adapter_state_dict(load_adapter_file(adapter))
            except KeyError as e:
                raise VlreproError(f"{adapter}: {e.args[0]}", fix="evaluate with the training run's model settings") from None
            log(f"loaded adapters from {adapter}")
    model.eval()
    task = str(cfg.task)
    if task == "sqa":
        rows, _ = eval_sqa(model, cfg, out_dir, data, log=log)
    elif task == "caption":
        rows, _ = eval_caption(model, cfg, out_dir, *data, log=log)
    else:
        rows, _ = eval_mme(model, cfg, out_dir, data, log=log)
    return [_row(cfg, r) for r in rows]


def _row(cfg: DictConfig, r: dict[str, Any], train: dict[str, Any] | None = None) -> dict[str, Any]:
    key = r.pop("paper_key", None)
    extra = r.pop("extra", None) or {}
    paper = PAPER_VALUES.get((key[0], str(cfg.llm_model), key[1])) if key else None
    return result_row(package=PACKAGE, paper=PAPER, model=f"ADEM-VL LLaMA-{cfg.llm_model}", device=str(cfg.device),
                      config=plain_config(cfg), paper_value=paper, train=train, **r, **({"scores": extra} if extra else {}))


def run_eval(cfg: DictConfig) -> int:
    """The ``eval`` verb."""
    rows = evaluate(cfg)
    path = write_results(Path(str(cfg.out_dir)), rows)
    print(f"wrote {path}")
    return 0
