"""LLaVA-format training data for SQ-LLaVA: lazy dataset, ``pad`` image preprocessing, collator.

A sample is tokenised at ``__getitem__`` time (``lazy_preprocess``), so the self-questioning
relabelling (probability ``sq_r``) is redrawn every epoch as in the original; the draws come from
a per-dataset ``random.Random(seed)`` so that a run is reproducible. A missing image is logged and
the sample is trained as text only (the original crashes with NameError, spec §4).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from vlrepro.shared.data import ConversationRecord, load_llava
from vlrepro.shared.errors import VlreproError
from vlrepro.shared.images import expand_to_square

from .conversation import tokenize_conversation
from .model import IGNORE_INDEX

log = logging.getLogger(__name__)


def preprocess_image(img: Image.Image, image_processor, aspect_ratio: str = "pad") -> torch.Tensor:
    """PIL image -> (3, S, S) pixels; ``pad`` pads to square with int(255 * CLIP mean) first."""
    if aspect_ratio == "pad":
        img = expand_to_square(img, tuple(int(x * 255) for x in image_processor.image_mean))
    return image_processor(images=img, return_tensors="pt")["pixel_values"][0]


def blank_image(image_processor) -> torch.Tensor:
    """The zero image LLaVA gives text-only samples so that every batch has one image per sample."""
    size = image_processor.crop_size
    return torch.zeros(3, size["height"], size["width"])


class LazySupervisedDataset(Dataset):
    """LLaVA JSON -> ``{input_ids, labels, image, has_image}``, tokenised per access.

    Args:
        records: from :func:`vlrepro.shared.data.load_llava`.
        version: conversation template (``plain`` for alignment, ``v1_sq`` for SQ tuning, ``v1``).
        sq_r: self-questioning relabelling probability (0.5 in the paper).
    """

    def __init__(self, records: list[ConversationRecord], tokenizer, image_processor, *, version: str,
                 sq_r: float = 0.5, image_aspect_ratio: str = "pad", model_max_length: int = 2048, seed: int = 0):
        self.records = records
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.version = version
        self.sq_r = sq_r
        self.image_aspect_ratio = image_aspect_ratio
        self.model_max_length = model_max_length
        self.rng = random.Random(seed)
        self.mismatches = 0
        self.missing_images = 0

    def __len__(self) -> int:
        return len(self.records)

    @property
    def modality_lengths(self) -> list[int]:
        """Whitespace word counts, positive for image samples and negative for text-only (LLaVA's sampler)."""
        out = []
        for r in self.records:
            n = sum(len(t["value"].split()) for t in r.conversations)
            out.append(n if r.has_image else -n)
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        image = None
        if rec.has_image:
            try:
                image = preprocess_image(rec.load_image(), self.image_processor, self.image_aspect_ratio)
            except VlreproError as e:
                self.missing_images += 1
                log.warning("skipping the image of sample %s: %s", rec.id, e.one_line())
        has_image = image is not None
        convs = rec.conversations
        if not has_image:  # drop the placeholder so the text-only sample is consistent
            convs = [dict(t, value=t["value"].replace("<image>", "").strip()) for t in convs]
        tok = tokenize_conversation(convs, self.tokenizer, self.version, has_image=has_image, sq_r=self.sq_r,
                                    rng=self.rng, model_max_length=self.model_max_length)
        if tok.mismatch:
            self.mismatches += 1
            log.warning("tokenization mismatch in sample %s: the whole sample is masked (as in the original)", rec.id)
        return {"input_ids": tok.input_ids, "labels": tok.labels,
                "image": image if has_image else blank_image(self.image_processor), "has_image": has_image}


@dataclass
class SupervisedCollator:
    """Right-pads ``input_ids`` with the pad id and ``labels`` with -100; stacks one image per sample."""

    pad_token_id: int

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        n = max(b["input_ids"].shape[0] for b in batch)
        ids = torch.full((len(batch), n), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), n), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for k, b in enumerate(batch):
            t = b["input_ids"].shape[0]
            ids[k, :t] = b["input_ids"]
            labels[k, :t] = b["labels"]
            mask[k, :t] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask,
                "images": torch.stack([b["image"] for b in batch])}


def load_training_records(data_path: str | Path, image_folder: str | Path) -> list[ConversationRecord]:
    """LLaVA JSON records (a missing or malformed file is a one-line error naming it)."""
    return load_llava(data_path, image_folder)


def modality_grouped_indices(lengths: list[int], batch_size: int, world_size: int, generator: torch.Generator) -> list[int]:
    """LLaVA's ``group_by_modality_length`` order: every mega-batch holds one modality only.

    Image samples (length > 0) and text-only samples (length < 0) are shuffled separately, cut into
    mega-batches of ``batch_size * world_size`` sorted by length, and the mega-batches are shuffled
    together; the two incomplete tails are merged into a final mixed batch.
    """
    if all(x > 0 for x in lengths) or all(x < 0 for x in lengths):
        groups = [list(range(len(lengths)))]
    else:
        groups = [[i for i, x in enumerate(lengths) if x > 0], [i for i, x in enumerate(lengths) if x < 0]]
    mega = batch_size * world_size
    full, tails = [], []
    for idx in groups:
        perm = [idx[j] for j in torch.randperm(len(idx), generator=generator).tolist()]
        chunks = [sorted(perm[k:k + mega], key=lambda i: -abs(lengths[i])) for k in range(0, len(perm), mega)]
        if chunks and len(chunks[-1]) < mega:
            tails += chunks.pop()
        full += chunks
    order = [full[j] for j in torch.randperm(len(full), generator=generator).tolist()]
    if tails:
        order.append(sorted(tails, key=lambda i: -abs(lengths[i])))
    return [i for chunk in order for i in chunk]
