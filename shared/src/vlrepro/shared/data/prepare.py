"""``vlrepro data prepare``: the preprocessing steps the papers need, written atomically.

- ``vqav2`` (Lever-LM, specs/leverlm.md §4): ``vqav2_hf.py --root_path`` writes
  ``$VQAV2_PATH/vqav2_hf/vqav2_mscoco_{train,val}2014.json`` = the official annotation JSON with
  each annotation given its ``question`` string (joined on ``question_id``). ``vqav2_local_sub``
  reads ``vqav2_hf/vqav2_mscoco_val2014_subset.json``, 10,000 val questions in the same JSON
  shape; the original has no script for it, so ours samples it with a seed and ships the
  question-id list beside it (``vqav2_mscoco_val2014_subset_question_ids.json``).
- ``vqav2`` (LIVE, specs/live.md §4): the repo ships ``v2_mscoco_val2014_question_subdata.json``
  but the matching ``v2_mscoco_val2014_annotations_subdata.json`` blob is missing; given the
  question subset, ``--live-subdata`` rebuilds the annotation subset by filtering the official
  val annotations on its question ids.
- ``imagenet`` (LCL, specs/lcl.md §2.1): ``test100_pairs.jsonl`` is broken in the release; it is
  rebuilt from the classes absent from ``train900_pairs.jsonl`` (ids of ``map_clsloc.txt``),
  pooling ``train/<wnid>/*.JPEG`` and the val images of ``LOC_val_solution.csv``: 32 seeded
  random ``context_samples`` per class, the rest ``test_samples``, classes in id order so that
  lines 2i/2i+1 pair up.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..atomic import atomic_open, write_json_atomic
from ..errors import VlreproError
from ..paths import dataset_dir
from ._io import load_json, malformed, need_keys, need_list, require
from .episodes import MAP_CLSLOC, TEST_PAIRS, imagenet_test_classes, load_imagenet_train, load_map_clsloc
from .vqa import vqa_files

HF_DIR = "vqav2_hf"
SUBSET_NAME = "vqav2_mscoco_val2014_subset.json"
SUBSET_IDS_NAME = "vqav2_mscoco_val2014_subset_question_ids.json"
LIVE_QUESTION_SUBDATA = "v2_mscoco_val2014_question_subdata.json"
LIVE_ANNOTATION_SUBDATA = "v2_mscoco_val2014_annotations_subdata.json"
VAL_SOLUTION = "LOC_val_solution.csv"


# --------------------------------------------------------------------------- VQAv2 (Lever-LM / LIVE)


def vqav2_hf_json(split: str, root: str | Path | None = None) -> dict:
    """Lever-LM's ``vqav2_hf`` form of one split: the annotation JSON, each annotation + its ``question``."""
    qpath, apath = vqa_files("vqav2", split, root)
    qdoc = need_keys(load_json(qpath, "vqav2", "VQA questions file"), ["questions"], qpath, "vqav2", "top level")
    text = {}
    for i, q in enumerate(need_list(qdoc["questions"], qpath, "vqav2", "'questions'")):
        need_keys(q, ["question_id", "question"], qpath, "vqav2", f"question {i}")
        text[int(q["question_id"])] = q["question"]
    adoc = need_keys(load_json(apath, "vqav2", "VQA annotations file"), ["annotations"], apath, "vqav2", "top level")
    out = {k: v for k, v in adoc.items() if k != "annotations"}  # keep info, license, data_subtype, …
    anns = []
    for i, a in enumerate(need_list(adoc["annotations"], apath, "vqav2", "'annotations'")):
        need_keys(a, ["question_id"], apath, "vqav2", f"annotation {i}")
        qid = int(a["question_id"])
        if qid not in text:
            raise malformed(apath, "vqav2", f"question_id {qid} has no question in {qpath.name}")
        anns.append({**a, "question": text[qid]})
    out["annotations"] = anns
    return out


def prepare_vqav2_hf(root: str | Path | None = None, *, out_dir: str | Path | None = None,
                     subset_size: int = 10_000, seed: int = 0) -> list[Path]:
    """Write ``vqav2_hf/vqav2_mscoco_{train,val}2014.json`` and the seeded val subset + its id list.

    The subset keeps the val file's annotation order (sorted by question id at load anyway) and
    every top-level key; ``subset_size`` ≥ the val size keeps all of val.
    """
    out = Path(out_dir) if out_dir is not None else dataset_dir("vqav2", root) / HF_DIR
    written = []
    for split in ("train", "val"):
        doc = vqav2_hf_json(split, root)
        written.append(write_json_atomic(out / f"vqav2_mscoco_{split}2014.json", doc, indent=None))
    ids = sorted(int(a["question_id"]) for a in doc["annotations"])  # doc is val here
    chosen = set(random.Random(seed).sample(ids, min(subset_size, len(ids))))
    sub = {**doc, "annotations": [a for a in doc["annotations"] if int(a["question_id"]) in chosen]}
    written.append(write_json_atomic(out / SUBSET_NAME, sub, indent=None))
    written.append(write_json_atomic(out / SUBSET_IDS_NAME, sorted(chosen), indent=None))
    return written


def prepare_live_subdata(root: str | Path | None = None, *, questions: str | Path | None = None,
                         out: str | Path | None = None) -> Path:
    """Rebuild LIVE's ``v2_mscoco_val2014_annotations_subdata.json`` from its question subset.

    ``questions`` defaults to ``$VQAV2_PATH/v2_mscoco_val2014_question_subdata.json`` (shipped by
    the LIVE repo under ``annotation/vqav2/``); every one of its ids must be in val.
    """
    d = dataset_dir("vqav2", root)
    qpath = Path(questions) if questions is not None else d / LIVE_QUESTION_SUBDATA
    qdoc = need_keys(load_json(qpath, "vqav2", "LIVE question subset"), ["questions"], qpath, "vqav2", "top level")
    wanted = {int(need_keys(q, ["question_id"], qpath, "vqav2", f"question {i}")["question_id"])
              for i, q in enumerate(need_list(qdoc["questions"], qpath, "vqav2", "'questions'"))}
    _, apath = vqa_files("vqav2", "val", root)
    adoc = need_keys(load_json(apath, "vqav2", "VQA annotations file"), ["annotations"], apath, "vqav2", "top level")
    anns = [a for a in adoc["annotations"] if int(a["question_id"]) in wanted]
    missing = wanted - {int(a["question_id"]) for a in anns}
    if missing:
        raise malformed(qpath, "vqav2", f"{len(missing)} question ids are not in {apath.name}, e.g. {min(missing)}")
    target = Path(out) if out is not None else d / LIVE_ANNOTATION_SUBDATA
    return write_json_atomic(target, {**{k: v for k, v in adoc.items() if k != "annotations"}, "annotations": anns},
                             indent=None)


# --------------------------------------------------------------------------- ImageNet-100 (LCL)


def imagenet_images_by_class(root: str | Path) -> dict[str, list[str]]:
    """wnid → image paths relative to the CLS-LOC root: ``train/<wnid>/*`` (sorted) then pooled val images."""
    d = Path(root)
    out: dict[str, list[str]] = {}
    train = d / "train"
    if train.is_dir():
        for cls in sorted(p for p in train.iterdir() if p.is_dir()):
            out[cls.name] = [f"train/{cls.name}/{f.name}" for f in sorted(cls.iterdir()) if f.is_file()]
    sol = d / VAL_SOLUTION
    if sol.is_file():
        lines = sol.read_text(encoding="utf-8").splitlines()
        for lineno, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            image_id, _, pred = line.partition(",")
            if not pred.split():
                raise malformed(sol, "imagenet", f"line {lineno} has no label")
            out.setdefault(pred.split()[0], []).append(f"val/{image_id}.JPEG")
    return out


def build_test100(root: str | Path | None = None, *, context: int = 32, seed: int = 0) -> list[dict]:
    """The ``test100_pairs.jsonl`` rows: classes absent from train900, by id, paired 2i/2i+1."""
    d = dataset_dir("imagenet", root)
    train = load_imagenet_train(d)
    cmap = load_map_clsloc(d)
    test = imagenet_test_classes(train, cmap)
    if len(test) % 2:
        raise malformed(d / MAP_CLSLOC, "imagenet", f"{len(test)} classes are absent from train900, need an even number")
    images = imagenet_images_by_class(d)
    rng = random.Random(seed)
    rows = []
    for c in test:
        imgs = images.get(c.wnid, [])
        if len(imgs) <= context:
            raise VlreproError(f"ImageNet class {c.wnid} ({c.display_name}) has {len(imgs)} images under {d}, "
                               f"need more than {context}",
                               fix="set IMAGENET_PATH to the CLS-LOC folder (train/<wnid>/*.JPEG, val/*.JPEG)")
        ctx = rng.sample(imgs, context)
        chosen = set(ctx)
        rows.append({"class_id": c.class_id, "class_name": c.display_name, "context_samples": ctx,
                     "test_samples": [p for p in imgs if p not in chosen]})
    return rows


def write_test100(path: str | Path, rows: list[dict]) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return Path(path)


def prepare_imagenet(root: str | Path | None = None, *, out: str | Path | None = None, context: int = 32,
                     seed: int = 0) -> Path:
    """Rebuild ``$IMAGENET_PATH/test100_pairs.jsonl`` (or ``out``)."""
    d = dataset_dir("imagenet", root)
    require(d / MAP_CLSLOC, "imagenet", "ImageNet class map")
    return write_test100(Path(out) if out is not None else d / TEST_PAIRS, build_test100(d, context=context, seed=seed))
