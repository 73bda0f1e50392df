"""LCL data: episode datasets over the official files, the collator, the ImageNet-100 rebuild, mini data.

Files (readers in ``vlrepro.shared.data``; paths relative to each root):
- ``$IMAGENET_PATH/train900_pairs.jsonl`` (training classes), ``test100_pairs.jsonl`` (the released
  blob is corrupt: rebuild it as the complement of train900 with ``vlrepro data prepare imagenet``),
  images ``train/<wnid>/…``, ``val/…``.
- ``$ISEKAI_PATH/ISEKAI-10.json``, ``ISEKAI-pair.json`` (JSON Lines), images relative to that folder.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from vlrepro.shared.data import load_episodes, load_imagenet_test, load_imagenet_train, open_rgb
from vlrepro.shared.errors import VlreproError

from .method import (
    Episode,
    encode_rounds,
    imagenet_eval_episode,
    imagenet_eval_index,
    isekai_eval_episode,
    sample_train_episode,
)
from .model import IGNORE_INDEX, preprocess_images


def _episode_rng(seed: int, *parts: int) -> random.Random:
    """One generator per (seed, epoch, index): episodes do not depend on worker count or visiting order."""
    return random.Random(":".join(str(p) for p in (seed, *parts)))


class EpisodeTensors:
    """Turns an :class:`Episode` into model inputs (images opened from ``image_root``)."""

    def __init__(self, tokenizer, processor, image_token_len: int, image_root: Path, *, dataset: str):
        self.tokenizer = tokenizer
        self.processor = processor
        self.image_token_len = image_token_len
        self.image_root = Path(image_root)
        self.dataset = dataset

    def load(self, image: Any) -> Image.Image:
        if isinstance(image, Image.Image):
            return image
        return open_rgb(self.image_root / image, dataset=self.dataset, how=f"see `vlrepro data check {self.dataset}`")

    def __call__(self, episode: Episode, *, train: bool) -> dict[str, Any]:
        enc = encode_rounds(episode.rounds, self.tokenizer, self.image_token_len, train=train)
        pixels = preprocess_images([self.load(im) for im in episode.images], self.processor)  # [S, 3, H, W]
        return {"input_ids": enc.input_ids, "labels": enc.labels, "images": pixels, "target": enc.target_text,
                "negative": episode.negative}


class TrainEpisodes(Dataset):
    """ImageNet-900 episodes: item i is an episode anchored on class i (len = number of classes)."""

    def __init__(self, classes, to_tensors: EpisodeTensors, *, shot: int, policy: str, seed: int):
        self.classes = list(classes)
        self.class_index = {c.class_id: i for i, c in enumerate(self.classes)}
        self.to_tensors = to_tensors
        self.shot, self.policy, self.seed = shot, policy, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.classes)

    def episode(self, index: int) -> Episode:
        rng = _episode_rng(self.seed, self.epoch, index)
        return sample_train_episode(self.classes, index, self.shot, rng, policy=self.policy, class_index=self.class_index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.to_tensors(self.episode(index), train=True)


class EvalEpisodes(Dataset):
    """Fixed evaluation episodes (ImageNet-100 or ISEKAI); episodes are built up front from paths."""

    def __init__(self, episodes: Sequence[Episode], to_tensors: EpisodeTensors):
        self.episodes = list(episodes)
        self.to_tensors = to_tensors

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.to_tensors(self.episodes[index], train=False)


def imagenet100_episodes(classes, shot: int, sample_per_class: int, seed: int) -> list[Episode]:
    return [imagenet_eval_episode(classes, ci, si, shot, _episode_rng(seed, 0, k))
            for k, (ci, si) in enumerate(imagenet_eval_index(classes, sample_per_class))]


def isekai_episodes(rows, shot: int, seed: int) -> list[Episode]:
    return [isekai_eval_episode(row, shot, _episode_rng(seed, 0, k)) for k, row in enumerate(rows)]


def load_train_classes(root: str | Path | None, filename: str = "train900_pairs.jsonl"):
    return load_imagenet_train(root, filename)


def load_eval_set(name: str, filename: str | Path, image_folder: str | Path | None):
    """``imagenet100`` -> test100 class rows; ``isekai`` -> ISEKAI episode rows (both with their image root)."""
    p = Path(filename)
    if name == "imagenet100":
        return load_imagenet_test(p.parent, p.name), Path(image_folder or p.parent)
    if name == "isekai":
        return load_episodes(p, image_folder), Path(image_folder or p.parent)
    raise VlreproError(f"unknown eval set kind {name!r}", fix="use imagenet100 or isekai")


def collate(batch: list[dict[str, Any]], *, pad_id: int, left_pad: bool) -> dict[str, Any]:
    """Pad ids (right for training, left for generation), labels with -100; images flat [N, 3, H, W] in order."""
    longest = max(len(b["input_ids"]) for b in batch)
    ids, labels, mask = [], [], []
    for b in batch:
        pad = longest - len(b["input_ids"])
        if left_pad:
            ids.append([pad_id] * pad + b["input_ids"])
            labels.append([IGNORE_INDEX] * pad + b["labels"])
            mask.append([0] * pad + [1] * len(b["input_ids"]))
        else:
            ids.append(b["input_ids"] + [pad_id] * pad)
            labels.append(b["labels"] + [IGNORE_INDEX] * pad)
            mask.append([1] * len(b["input_ids"]) + [0] * pad)
    return {
        "input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask),
        "images": torch.cat([b["images"] for b in batch]),  # [sum S_b, 3, H, W]
        "target": [b["target"] for b in batch], "negative": [b["negative"] for b in batch],
    }


def make_mini_data(root: str | Path, *, seed: int = 0) -> Path:
    """The shared mini ImageNet (8 train / 4 test classes) + ISEKAI sets in the official layout under ``root``."""
    from vlrepro.shared.data import make_mini

    make_mini("imagenet", root, seed=seed)
    make_mini("isekai", root, seed=seed)
    return Path(root)
