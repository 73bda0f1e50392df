"""Evaluation (spec §5): captioning and LLaVA-style benchmarks, greedy, conv ``v1``; optional ``--sq``.

Tasks (``task=`` in ``eval.yaml``):
- ``caption``: COCO captions (Karpathy test, or official ``captions_{split}{year}.json``), prompt
  "Provide a one-sentence caption for the provided image." (configurable; the original's prompt
  is unknown), SQ-LLaVA's normalisation (lowercase, strip ``.!"()*#:;~``, 20 words), then
  BLEU/METEOR/ROUGE_L/CIDEr via ``vlrepro.shared.metrics.caption`` (references joined by image
  id, not by line order as in the original).
- ``vqav2``/``okvqa``: "Answer the question using a single word or phrase.", official VQA accuracy.
- ``scienceqa``: LLaVA's multiple-choice prompt ("Answer with the option's letter from the given
  choices directly."), accuracy (IMG subset where the paper reports SQA-I).
- ``pope``: a question jsonl ``{question_id, image, text, label}``; accuracy/precision/recall/F1.

Predictions are written as jsonl ``{question_id, prompt, text, answer_id, model_id}`` (the
original's format) and appended to as the run goes, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from vlrepro.shared.errors import MissingFileError, VlreproError

from . import PAPER
from .conversation import inference_prompt, tokenizer_image_token
from .data import preprocess_image

SHORT_ANSWER = "Answer the question using a single word or phrase."
MULTI_CHOICE = "Answer with the option's letter from the given choices directly."
CAPTION_PROMPT = "Provide a one-sentence caption for the provided image."
_CAPTION_STRIP = re.compile(r"[.!\"()*#:;~]")


@dataclass
class Item:
    """One evaluation query: an id, an image loader, the question text (before the template)."""

    qid: Any
    load_image: Any
    question: str


def normalize_caption(text: str, max_words: int = 20) -> str:
    """The original ``eval_image_caption.py`` cleanup: lowercase, drop ``.!"()*#:;~``, collapse spaces, truncate."""
    words = _CAPTION_STRIP.sub(" ", text.lower()).split()
    return " ".join(words[:max_words])


def _batches(seq: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


@torch.no_grad()
def generate_answers(model, tokenizer, image_processor, items: Sequence[Item], *, template: str = "v1",
                     max_new_tokens: int = 32, batch_size: int = 1, image_aspect_ratio: str = "pad",
                     device: str = "cpu", sq: bool = False, n_shot: int = 3, seed: int = 0,
                     done: dict | None = None, on_answer=None, progress: bool = True) -> dict[Any, dict]:
    """Greedy answers for ``items``: ``{qid: {"prompt", "text"}}``; ``done`` answers are skipped (resume)."""
    from tqdm import tqdm

    out: dict[Any, dict] = dict(done or {})
    todo = [it for it in items if it.qid not in out]
    bar = tqdm(total=len(todo), desc="generate", disable=not progress, mininterval=2.0)
    for chunk in _batches(todo, 1 if sq else batch_size):
        images = torch.stack([preprocess_image(it.load_image(), image_processor, image_aspect_ratio) for it in chunk]).to(device)
        if sq:
            it = chunk[0]
            text, prompt = self_questioning_answer(model, tokenizer, images, it.question, n_shot=n_shot,
                                                   max_new_tokens=max_new_tokens, seed=seed)
            answers = [(it, prompt, text)]
        else:
            prompts = [inference_prompt(it.question, template) for it in chunk]
            texts = _generate(model, tokenizer, prompts, images, max_new_tokens=max_new_tokens, device=device)
            answers = list(zip(chunk, prompts, texts, strict=False))
        for it, prompt, text in answers:
            out[it.qid] = {"prompt": prompt, "text": text}
            if on_answer:
                on_answer(it.qid, prompt, text)
        bar.update(len(chunk))
    bar.close()
    return out


def _generate(model, tokenizer, prompts: Sequence[str], images: torch.Tensor, *, max_new_tokens: int,
              device: str, **gen_kwargs: Any) -> list[str]:
    ids = [torch.tensor(tokenizer_image_token(p, tokenizer)) for p in prompts]
    n = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), n), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), n), dtype=torch.long)
    for k, x in enumerate(ids):
        input_ids[k, :len(x)] = x
        mask[k, :len(x)] = 1
    kwargs = dict(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                  eos_token_id=tokenizer.eos_token_id)
    kwargs.update(gen_kwargs)
    new = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), images=images, **kwargs)
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]


def self_questioning_answer(model, tokenizer, images: torch.Tensor, question: str, *, n_shot: int = 3,
                            max_new_tokens: int = 32, seed: int = 0, temperature: float = 1.2, top_k: int = 300,
                            top_p: float = 0.95, max_question_tokens: int = 300) -> tuple[str, str]:
    """``--sq`` inference (spec §2.4): describe, self-ask ``n_shot`` questions, answer them, then the real question.

    1. greedy answer to "Can you describe the image in detail?" -> D;
    2. sample ``n_shot`` questions after ``... ASSISTANT: D</s>VUSER:`` (v1_sq template;
       temperature 1.2, top-k 300, top-p 0.95 as in the demo/model_cap);
    3. answer each greedily after ``... VUSER: q</s> ASSISTANT:``;
    4. the final prompt carries the description and the self-QA pairs as USER/ASSISTANT turns,
       then the real question, answered greedily (v1 template).
    Returns (answer, final prompt).
    """
    device = images.device
    describe = "Can you describe the image in detail?"
    desc_prompt = inference_prompt(describe, "v1_sq")
    description = _generate(model, tokenizer, [desc_prompt], images, max_new_tokens=max_new_tokens, device=str(device))[0]
    sq_prefix = desc_prompt + " " + description + "</s>VUSER:"
    torch.manual_seed(seed)
    pairs: list[tuple[str, str]] = [(describe, description)]
    for _ in range(n_shot):
        q = _generate(model, tokenizer, [sq_prefix], images, max_new_tokens=max_question_tokens, device=str(device),
                      do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p)[0]
        q = q.split("ASSISTANT")[0].strip() or "What is in the image?"
        a = _generate(model, tokenizer, [sq_prefix + " " + q + "</s> ASSISTANT:"], images, max_new_tokens=max_new_tokens,
                      device=str(device))[0]
        pairs.append((q, a))
    final = inference_prompt(question, "v1", history=pairs)
    answer = _generate(model, tokenizer, [final], images, max_new_tokens=max_new_tokens, device=str(device))[0]
    return answer, final


# ------------------------------------------------------------------------------ task data
def caption_items(cfg: DictConfig) -> tuple[list[Item], dict[Any, list[str]], str]:
    """COCO caption items + references ``{image_id: [captions]}`` + the split name."""
    from vlrepro.shared.data import load_coco_captions, load_karpathy

    if cfg.caption_source == "karpathy":
        records = load_karpathy(cfg.get("annotation_file") or None, split=cfg.split)
    else:
        records = load_coco_captions(int(cfg.coco_year), cfg.split, cfg.get("coco_root") or None)
    records = records[: int(cfg.max_samples)] if cfg.get("max_samples") else records
    prompt = cfg.get("prompt") or CAPTION_PROMPT
    items = [Item(r.image_id, r.load_image, prompt) for r in records]
    return items, {r.image_id: r.captions for r in records}, cfg.split


def vqa_items(cfg: DictConfig):
    from vlrepro.shared.data import load_vqa

    records = load_vqa(cfg.task, cfg.split, root=cfg.get("vqa_root") or None, coco_root=cfg.get("coco_root") or None)
    records = records[: int(cfg.max_samples)] if cfg.get("max_samples") else records
    suffix = cfg.get("prompt") or SHORT_ANSWER
    return [Item(r.question_id, r.load_image, f"{r.question}\n{suffix}") for r in records], records


def scienceqa_prompt(question: str, choices: Sequence[str], hint: str = "") -> str:
    """LLaVA's ScienceQA question text: context, question, lettered options, the letter instruction."""
    opts = "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))
    ctx = f"Context: {hint}\n" if hint else ""
    return f"{ctx}{question}\n{opts}\n{MULTI_CHOICE}"


def pope_scores(labels: Sequence[str], answers: Sequence[str]) -> dict[str, float]:
    """POPE's ``eval_pope.py``: yes/no parsing (first word, 'No'/'not' -> no), acc/precision/recall/F1 (%)."""
    def yes(text: str) -> bool:
        t = text.replace(".", "").replace(",", "").lower()
        words = t.split()
        return not (any(w in ("no", "not") for w in words))

    tp = fp = tn = fn = 0
    for lab, ans in zip(labels, answers, strict=False):
        p, g = yes(ans), lab.strip().lower() == "yes"
        tp += p and g
        fp += p and not g
        tn += (not p) and not g
        fn += (not p) and g
    n = max(1, tp + fp + tn + fn)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": 100 * (tp + tn) / n, "precision": 100 * precision, "recall": 100 * recall, "F1": 100 * f1,
            "yes_ratio": 100 * (tp + fp) / n}


# ------------------------------------------------------------------------------ the verb
def _load_model(cfg: DictConfig):
    from . import checkpoint as ckpt

    dtype = torch.float16 if (cfg.get("fp16") and cfg.device != "cpu") else None
    model = ckpt.load_pretrained_model(cfg.model_path, cfg.get("model_base") or None, torch_dtype=dtype).to(cfg.device)
    tok_dir = Path(cfg.model_path)
    tokenizer = ckpt.load_tokenizer(str(tok_dir if (tok_dir / "tokenizer_config.json").is_file() else cfg.model_base))
    proc_dir = tok_dir if (tok_dir / "preprocessor_config.json").is_file() else ckpt.unwrap(model).config.mm_vision_tower
    return model, tokenizer, ckpt.load_image_processor(str(proc_dir))


def _predictions_path(cfg: DictConfig) -> Path:
    return Path(cfg.out_dir) / f"{cfg.task}_{cfg.split}_answers.jsonl"


def _resume(path: Path, resume: bool) -> dict:
    if not resume or not path.is_file():
        return {}
    done = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            done[row["question_id"]] = {"prompt": row["prompt"], "text": row["text"]}
    return done


def run_eval(cfg: DictConfig, model=None, tokenizer=None, image_processor=None) -> list[dict]:
    """Evaluate one task; returns result rows (also written to ``out_dir/results.json``)."""
    from vlrepro.shared.atomic import write_json_atomic
    from vlrepro.shared.results import result_row, write_results

    task = cfg.task
    if task == "caption":
        items, refs, split = caption_items(cfg)
    elif task in ("vqav2", "okvqa"):
        items, vqa_records = vqa_items(cfg)
    elif task == "scienceqa":
        from vlrepro.shared.data import load_scienceqa

        sqa = [r for r in load_scienceqa(cfg.split, cfg.get("scienceqa_root") or None) if r.has_image or not cfg.img_only]
        sqa = sqa[: int(cfg.max_samples)] if cfg.get("max_samples") else sqa
        items = [Item(r.pid, r.load_image, scienceqa_prompt(r.question, r.choices, r.hint)) for r in sqa]
    elif task == "pope":
        from vlrepro.shared.errors import read_jsonl

        qfile = Path(cfg.pope_question_file)
        rows = read_jsonl(qfile, what="POPE question file", fix="get POPE's coco_pope_{random,popular,adversarial}.json")
        img_root = Path(cfg.pope_image_folder)
        from vlrepro.shared.data import open_rgb

        items = [Item(r["question_id"], (lambda p=img_root / r["image"]: open_rgb(p, dataset="coco")), r["text"]) for r in rows]
        items = items[: int(cfg.max_samples)] if cfg.get("max_samples") else items
    else:
        raise VlreproError(f"unknown eval task {task!r}", fix="task=caption|vqav2|okvqa|scienceqa|pope")
    if not items:
        raise VlreproError(f"no {task} items to evaluate", fix="check split and data paths")
    if model is None:
        model, tokenizer, image_processor = _load_model(cfg)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred_path = _predictions_path(cfg)
    done = _resume(pred_path, bool(cfg.get("resume", True)))
    model_id = str(cfg.get("model_id") or Path(str(cfg.model_path)).name)
    with pred_path.open("a", encoding="utf-8") as fh:
        def write(qid, prompt, text):
            fh.write(json.dumps({"question_id": qid, "prompt": prompt, "text": text, "answer_id": f"{qid}", "model_id": model_id}) + "\n")
            fh.flush()

        answers = generate_answers(model, tokenizer, image_processor, items, template=cfg.conv_mode,
                                   max_new_tokens=int(cfg.max_new_tokens), batch_size=int(cfg.batch_size),
                                   image_aspect_ratio=cfg.image_aspect_ratio, device=str(cfg.device), sq=bool(cfg.sq),
                                   n_shot=int(cfg.n_shot), seed=int(cfg.seed), done=done, on_answer=write,
                                   progress=bool(cfg.get("progress", True)))
    config = OmegaConf.to_container(cfg, resolve=True)
    common = dict(package="vlrepro-sophon", paper=PAPER, model=model_id, device=str(cfg.device), config=config)
    train = cfg.get("train_summary")
    train = dict(train) if train else None
    rows = []
    if task == "caption":
        from vlrepro.shared.metrics.caption import caption_scores

        preds = {it.qid: normalize_caption(answers[it.qid]["text"], int(cfg.max_words)) for it in items}
        refs_used = {k: [normalize_caption(r, 50) for r in refs[k]] for k in preds}
        preds = {k: (v or "empty") for k, v in preds.items()}
        scores = caption_scores(refs_used, preds, metrics=tuple(cfg.metrics), tokenize=bool(cfg.ptb_tokenize))
        # COCO results format, so `vlrepro eval caption --annotations ... --results ...` rescores the same captions
        write_json_atomic(out_dir / f"caption_{split}_results.json", [{"image_id": k, "caption": v} for k, v in preds.items()])
        for metric, value in scores.items():
            rows.append(result_row(task="captioning", dataset=cfg.dataset_name, split=split, n=len(preds), metric=metric,
                                   value=100 * value, train=train, **common))
    elif task in ("vqav2", "okvqa"):
        from vlrepro.shared.data import vqa_files
        from vlrepro.shared.errors import read_json
        from vlrepro.shared.metrics.vqa import postprocess_vqa_generation, vqa_accuracy

        _, ann_path = vqa_files(task, cfg.split, cfg.get("vqa_root") or None)
        anns = read_json(ann_path, what="VQA annotations")["annotations"]
        preds = {it.qid: postprocess_vqa_generation(answers[it.qid]["text"]) for it in items}
        # official results format for `vlrepro eval vqa --annotations ... --results ... --subset` (and EvalAI)
        write_json_atomic(out_dir / f"{task}_{cfg.split}_results.json", [{"question_id": k, "answer": v} for k, v in preds.items()])
        acc = vqa_accuracy(anns, preds, subset=True)
        rows.append(result_row(task="vqa", dataset=task, split=cfg.split, n=len(preds), metric="accuracy",
                               value=acc["overall"], paper_value=cfg.get("paper_value"), train=train, **common))
    elif task == "scienceqa":
        from vlrepro.shared.metrics.scienceqa import scienceqa_accuracy

        problems = {r.pid: {"choices": r.choices, "answer": r.answer, "hint": r.hint, "image": "image.png" if r.has_image else None,
                            "subject": r.subject, "grade": r.grade} for r in sqa}
        acc = scienceqa_accuracy(problems, {it.qid: answers[it.qid]["text"] for it in items}, subset=True)
        rows.append(result_row(task="scienceqa", dataset="scienceqa-img" if cfg.img_only else "scienceqa", split=cfg.split,
                               n=acc["n"], metric="accuracy", value=acc["acc_avg"], paper_value=cfg.get("paper_value"),
                               train=train, **common))
    else:
        scores = pope_scores([r["label"] for r in rows_of(items, cfg)], [answers[it.qid]["text"] for it in items])
        rows.append(result_row(task="pope", dataset="pope", split=cfg.split, n=len(items), metric="F1", value=scores["F1"],
                               paper_value=cfg.get("paper_value"), train=train, **common))
    write_results(out_dir, rows)
    for r in rows:
        print(f"[eval] {r['dataset']} {r['split']} {r['metric']} = {r['value']:.2f} (n={r['n']})", flush=True)
    return rows


def rows_of(items: Sequence[Item], cfg: DictConfig) -> list[dict]:
    from vlrepro.shared.errors import read_jsonl

    by_id = {r["question_id"]: r for r in read_jsonl(Path(cfg.pope_question_file), what="POPE question file")}
    return [by_id[it.qid] for it in items]


def eval_verb(cfg: DictConfig) -> int:
    if cfg.get("model_path") in (None, "") or not Path(str(cfg.model_path)).exists():
        # check data first: a missing data set is reported even before a missing model
        _check_data(cfg)
        raise MissingFileError(f"model folder not found: {cfg.model_path}",
                               fix="set model_path=<finetune output> (and model_base=<Vicuna-v1.5>)")
    run_eval(cfg)
    return 0


def _check_data(cfg: DictConfig) -> None:
    if cfg.task == "caption":
        caption_items(cfg)
    elif cfg.task in ("vqav2", "okvqa"):
        vqa_items(cfg)
    elif cfg.task == "scienceqa":
        from vlrepro.shared.data import load_scienceqa

        load_scienceqa(cfg.split, cfg.get("scienceqa_root") or None)
    elif cfg.task == "pope":
        from vlrepro.shared.paths import require_file

        require_file(cfg.pope_question_file, dataset="coco", how="get POPE's question files (coco_pope_*.json)")
