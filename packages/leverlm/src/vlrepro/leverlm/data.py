"""Lever-LM's data rows (spec §4) from the official files, through ``vlrepro.shared.data``.

A row is a plain dict with the task's fields; ``idx`` (the row number after sorting by
``image_id`` / ``question_id``) is the Lever-LM token id, so the order is reproducible:

* caption: ``idx, image (path), image_id, single_caption (first caption), captions``
* vqa: ``idx, image, image_id, question_id, question, answer (multiple_choice_answer), answers (10),
  question_type, answer_type``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlrepro.shared.errors import VlreproError


def caption_rows(year: int, split: str, root: str | Path | None) -> list[dict[str, Any]]:
    from vlrepro.shared.data import load_coco_captions

    recs = load_coco_captions(year, split, root=root)  # sorted by image_id
    return [{"idx": i, "image": str(r.image_path), "image_id": r.image_id, "single_caption": r.single_caption,
             "captions": list(r.captions)} for i, r in enumerate(recs)]


def vqa_rows(split: str, root: str | Path | None, coco_root: str | Path | None,
             subset_ids: list[int] | None = None) -> list[dict[str, Any]]:
    from vlrepro.shared.data import load_vqa

    recs = load_vqa("vqav2", split, root=root, coco_root=coco_root)  # sorted by question_id
    if subset_ids is not None:
        keep = set(int(q) for q in subset_ids)
        recs = [r for r in recs if r.question_id in keep]
    return [{"idx": i, "image": str(r.image_path), "image_id": r.image_id, "question_id": r.question_id,
             "question": r.question, "answer": r.multiple_choice_answer, "answers": list(r.answers),
             "question_type": r.question_type, "answer_type": r.answer_type} for i, r in enumerate(recs)]


def load_rows(dataset_cfg, split: str) -> list[dict[str, Any]]:
    """Rows of ``split`` ("train" = supporting set, "val" = test queries) for a ``dataset`` config node."""
    kind = str(dataset_cfg.kind)
    if kind == "coco":
        return caption_rows(int(dataset_cfg.year), split, dataset_cfg.get("coco_path"))
    if kind == "vqav2":
        subset = None
        if split == "val" and dataset_cfg.get("val_subset_file"):
            p = Path(str(dataset_cfg.val_subset_file))
            if not p.is_file():
                raise VlreproError(f"missing VQAv2 subset file {p}", fix="write it with `vlrepro-leverlm generate` docs: see README (vqav2_local_sub)")
            subset = json.loads(p.read_text())
        return vqa_rows(split, dataset_cfg.get("vqav2_path"), dataset_cfg.get("coco_path"), subset)
    if kind == "vqav2_online":
        raise VlreproError("vqav2_online (HuggingFaceM4/VQAv2, a loading-script hub dataset) is not supported offline",
                           fix="download the official VQAv2 files and use dataset=vqav2_local")
    raise VlreproError(f"unknown dataset kind {kind!r}", fix="use coco or vqav2")


def limit(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows (``-1`` = all), as ``index_data_num`` / ``test_data_num`` do."""
    return rows if n is None or int(n) < 0 else rows[: int(n)]
