"""VQAv2 and OK-VQA in the official VQA API format (questions JSON + annotations JSON).

Questions file: ``{"info", "task_type", "data_type", "data_subtype", "license",
"questions": [{"image_id", "question", "question_id"}]}``.
Annotations file: ``{"info", "license", "data_subtype", "annotations": [{"question_id", "image_id",
"question_type", "answer_type", "multiple_choice_answer", "answers": [10 × {"answer",
"answer_confidence", "answer_id"}]}]}``. OK-VQA v1.1 annotations have no
``multiple_choice_answer`` and their answers carry ``raw_answer`` (``answer`` is stemmed).
Images are COCO 2014: ``$COCO_PATH/mscoco2014/{split}2014/COCO_{split}2014_{image_id:012d}.jpg``.
"""

from __future__ import annotations

from pathlib import Path

from ..paths import dataset_dir
from ._io import load_json, malformed, need_keys, need_list
from .records import VQARecord

VQA_DATASETS = ("vqav2", "okvqa")
VQA_SPLITS = ("train", "val")


def vqa_files(dataset: str, split: str, root: str | Path | None = None) -> tuple[Path, Path]:
    """Official ``(questions, annotations)`` paths of ``dataset`` ∈ {vqav2, okvqa}, ``split`` ∈ {train, val}."""
    if dataset not in VQA_DATASETS:
        raise ValueError(f"unknown VQA dataset {dataset!r}; known: {VQA_DATASETS}")
    if split not in VQA_SPLITS:
        raise ValueError(f"unknown VQA split {split!r}; known: {VQA_SPLITS}")
    d = dataset_dir(dataset, root)
    if dataset == "vqav2":
        return d / f"v2_OpenEnded_mscoco_{split}2014_questions.json", d / f"v2_mscoco_{split}2014_annotations.json"
    return d / f"OpenEnded_mscoco_{split}2014_questions.json", d / f"mscoco_{split}2014_annotations.json"


def coco2014_image_dir(split: str, coco_root: str | Path | None = None) -> Path:
    """``$COCO_PATH/mscoco2014/{split}2014`` (COCO_PATH is the parent of ``mscoco2014``)."""
    return dataset_dir("coco", coco_root) / "mscoco2014" / f"{split}2014"


def coco2014_image_path(image_dir: Path, image_id: int) -> Path:
    """COCO 2014 file name convention: ``COCO_{split}2014_{image_id:012d}.jpg``; split from the folder name."""
    prefix = Path(image_dir).name  # "train2014" / "val2014"
    return Path(image_dir) / f"COCO_{prefix}_{int(image_id):012d}.jpg"


def load_vqa(dataset: str = "vqav2", split: str = "val", root: str | Path | None = None,
             coco_root: str | Path | None = None) -> list[VQARecord]:
    """Official VQAv2/OK-VQA questions joined with annotations, sorted by ``question_id``.

    ``root`` overrides ``VQAV2_PATH``/``OKVQA_PATH``; ``coco_root`` overrides ``COCO_PATH``.
    """
    q, a = vqa_files(dataset, split, root)
    return load_vqa_files(q, a, coco2014_image_dir(split, coco_root), dataset=dataset)


def load_vqa_files(questions_path: str | Path, annotations_path: str | Path, image_dir: str | Path,
                   *, dataset: str | None = "vqav2") -> list[VQARecord]:
    """Join an official questions file with its annotations file (any subset, e.g. LIVE's 10k val).

    Every annotation must have its question; questions without an annotation are dropped
    (LIVE's subset files pair a question subset with the full annotations, or the other way).
    """
    qp, ap = Path(questions_path), Path(annotations_path)
    questions = _questions_by_id(qp, dataset)
    ann_doc = need_keys(load_json(ap, dataset, "VQA annotations file"), ["annotations"], ap, dataset, "top level")
    anns = need_list(ann_doc["annotations"], ap, dataset, "'annotations'")
    records = []
    for i, ann in enumerate(anns):
        need_keys(ann, ["question_id", "image_id", "answers"], ap, dataset, f"annotation {i}")
        qid = int(ann["question_id"])
        if qid not in questions:
            if len(questions) >= len(anns):  # a full question file must cover every annotation
                raise malformed(ap, dataset, f"question_id {qid} has no question in {qp.name}")
            continue
        records.append(_record(ann, questions[qid], Path(image_dir), ap, dataset, i))
    if not records and anns:
        raise malformed(ap, dataset, f"no annotation matches a question of {qp.name}")
    records.sort(key=lambda r: r.question_id)
    return records


def _questions_by_id(qp: Path, dataset: str | None) -> dict[int, dict]:
    doc = need_keys(load_json(qp, dataset, "VQA questions file"), ["questions"], qp, dataset, "top level")
    out = {}
    for i, q in enumerate(need_list(doc["questions"], qp, dataset, "'questions'")):
        need_keys(q, ["question_id", "image_id", "question"], qp, dataset, f"question {i}")
        out[int(q["question_id"])] = q
    return out


def _record(ann: dict, q: dict, image_dir: Path, ap: Path, dataset: str | None, i: int) -> VQARecord:
    answers = need_list(ann["answers"], ap, dataset, f"annotation {i} 'answers'")
    for j, x in enumerate(answers):
        need_keys(x, ["answer"], ap, dataset, f"annotation {i} answer {j}")
    texts = [str(x["answer"]) for x in answers]
    if int(ann["image_id"]) != int(q["image_id"]):
        raise malformed(ap, dataset, f"question_id {ann['question_id']}: image_id {ann['image_id']} "
                                     f"differs from the question's {q['image_id']}")
    # OK-VQA has no multiple_choice_answer; LIVE uses answers[0].answer
    mca = ann.get("multiple_choice_answer") or (texts[0] if texts else "")
    return VQARecord(
        question_id=int(ann["question_id"]),
        image_id=int(ann["image_id"]),
        question=str(q["question"]),
        answers=texts,
        multiple_choice_answer=str(mca),
        question_type=str(ann.get("question_type", "")),
        answer_type=str(ann.get("answer_type", "")),
        image_path=coco2014_image_path(image_dir, int(ann["image_id"])),
        raw_answers=[str(x.get("raw_answer", x["answer"])) for x in answers],
        answer_confidences=[str(x.get("answer_confidence", "")) for x in answers],
    )
