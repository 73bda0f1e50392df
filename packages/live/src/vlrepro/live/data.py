"""VQAv2 / OK-VQA for LIVE: the training query set with sampled demonstrations, and the eval sets.

Training (spec §1.4): the query set is ``max_train_size`` rows drawn without replacement from the
train split (seeded); each item draws ``few_shot_num`` demonstrations *with replacement* from the
query set (``select_from_query``) or the whole split, in random order, redrawing while the query
itself is among them. Fix vs the original: the draw uses a generator seeded by
``(seed, epoch, index)``, so DataLoader workers do not repeat each other's numpy streams and a
run is reproducible whatever ``num_workers`` is.

Evaluation (spec §5): VQAv2 on the 10k val subset (``val_ques_file``/``val_ann_file`` under the
dataset folder, LIVE's ``annotation/vqav2`` files); when the subset file is absent, a seeded
deterministic subset of ``val_subset_size`` questions of the official val split (stated in the
README). OK-VQA on the full val split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from vlrepro.shared.data import VQARecord, load_vqa, load_vqa_files
from vlrepro.shared.data.vqa import coco2014_image_dir, vqa_files
from vlrepro.shared.paths import dataset_dir

from .prompts import VQAPrompt

#: ``data_cfg/task/datasets`` option -> vlrepro.shared dataset name
DATASET_NAMES = {"vqav2": "vqav2", "ok_vqa": "okvqa", "okvqa": "okvqa"}


def shared_name(name: str) -> str:
    if name not in DATASET_NAMES:
        from vlrepro.shared.errors import VlreproError

        raise VlreproError(f"unknown VQA dataset {name!r}", fix="use data_cfg/task/datasets=vqav2 or ok_vqa")
    return DATASET_NAMES[name]


def answer_label(record: VQARecord) -> str:
    """The training answer: VQAv2 ``multiple_choice_answer``; OK-VQA ``answers[0]`` (already in the record)."""
    return record.multiple_choice_answer


def load_split(ds_cfg: Mapping[str, Any], split: str) -> list[VQARecord]:
    """The official split of ``ds_cfg.name`` (``root_dir``/``coco_root`` override the env variables)."""
    return load_vqa(shared_name(ds_cfg["name"]), split, root=ds_cfg.get("root_dir"), coco_root=ds_cfg.get("coco_root"))


def load_eval_records(ds_cfg: Mapping[str, Any], *, seed: int = 0) -> tuple[list[VQARecord], list[dict], str]:
    """Records to evaluate, their official annotation dicts (for the metric), and a split label."""
    name = shared_name(ds_cfg["name"])
    root = dataset_dir(name, ds_cfg.get("root_dir"))
    q_full, a_full = vqa_files(name, "val", root)
    image_dir = coco2014_image_dir("val", ds_cfg.get("coco_root"))
    subset_q = root / ds_cfg["val_ques_file"] if ds_cfg.get("val_ques_file") else None
    subset_a = root / ds_cfg["val_ann_file"] if ds_cfg.get("val_ann_file") else None
    if subset_q is not None and subset_q.is_file():
        ann_path = subset_a if subset_a is not None and subset_a.is_file() else a_full
        records = load_vqa_files(subset_q, ann_path, image_dir, dataset=name)
        split = f"val ({subset_q.name})"
    else:
        records = load_vqa_files(q_full, a_full, image_dir, dataset=name)
        size = ds_cfg.get("val_subset_size")
        if size and 0 < int(size) < len(records):
            rng = np.random.default_rng(int(ds_cfg.get("val_subset_seed", seed)))
            keep = np.sort(rng.choice(len(records), size=int(size), replace=False))
            records = [records[i] for i in keep]
            split = f"val (seeded subset of {int(size)})"
        else:
            split = "val"
    test_num = int(ds_cfg.get("test_num", -1) or -1)
    if test_num > 0:
        records = records[:test_num]
    annotations = [official_annotation(r) for r in records]
    return records, annotations, split


def official_annotation(r: VQARecord) -> dict:
    """A record back in the official annotation layout the VQA metric reads."""
    return {
        "question_id": r.question_id,
        "image_id": r.image_id,
        "question_type": r.question_type,
        "answer_type": r.answer_type,
        "multiple_choice_answer": r.multiple_choice_answer,
        "answers": [{"answer": a, "answer_confidence": c or "yes", "answer_id": i + 1}
                    for i, (a, c) in enumerate(zip(r.answers, r.answer_confidences or [""] * len(r.answers), strict=False))],
    }


def select_query_set(n_records: int, max_train_size: int, seed: int) -> np.ndarray:
    """Indices of the training query set: ``max_train_size`` rows without replacement, seeded."""
    if max_train_size <= 0 or max_train_size >= n_records:
        return np.arange(n_records)
    return np.random.default_rng(seed).choice(n_records, size=max_train_size, replace=False)


def draw_demonstrations(rng: np.random.Generator, pool: Sequence[int], query: int, k: int) -> list[int]:
    """``k`` pool indices with replacement, random order, redrawn while ``query`` is among them."""
    if k == 0:
        return []
    if len(pool) < 2 and query in pool:
        raise ValueError("the demonstration pool holds only the query itself")
    while True:
        idx = [int(pool[i]) for i in rng.integers(0, len(pool), size=k)]
        if query not in idx:
            return idx


@dataclass
class ICVTrainItem:
    """Item lists of one training query (images as PIL)."""

    student: list  # [query image, "Question:.. Short answer:<a>."]  (+ EOS by the processor)
    query_x: list  # [query image, "Question:.. Short answer:"]
    ice: list  # [instruction, (image, ICD text) x k]
    teacher: list  # ice + student


class ICVTrainDataset(Dataset):
    """LIVE's training set: query set + demonstrations redrawn per item and epoch."""

    def __init__(self, records: Sequence[VQARecord], *, few_shot_num: int, max_train_size: int, seed: int,
                 prompt: VQAPrompt, select_from_query: bool = True) -> None:
        self.records = list(records)
        self.query_idx = select_query_set(len(self.records), int(max_train_size), int(seed))
        self.pool = self.query_idx if select_from_query else np.arange(len(self.records))
        self.few_shot_num = int(few_shot_num)
        self.seed = int(seed)
        self.prompt = prompt
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.query_idx)

    def demonstration_indices(self, i: int) -> list[int]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return draw_demonstrations(rng, self.pool, int(self.query_idx[i]), self.few_shot_num)

    def __getitem__(self, i: int) -> ICVTrainItem:
        q = self.records[int(self.query_idx[i])]
        image = q.load_image()
        demos = [(self.records[j].load_image(), self.records[j].question, answer_label(self.records[j]))
                 for j in self.demonstration_indices(i)]
        student = self.prompt.query_prompt(image, q.question, answer_label(q))
        ice = self.prompt.ice_prompt(demos)
        return ICVTrainItem(student=student, query_x=self.prompt.query_x(image, q.question), ice=ice, teacher=ice + student)


def collate_items(items: list[ICVTrainItem]) -> list[ICVTrainItem]:
    """Keep the item lists; the LightningModule tokenises them with the model's processor."""
    return items


def image_paths(records: Sequence[VQARecord]) -> list[Path]:
    return [r.image_path for r in records]
