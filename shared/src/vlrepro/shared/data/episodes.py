"""LCL's episode sources (specs/lcl.md §2-3): ImageNet-900 train classes, ImageNet-100 test classes, ISEKAI.

- ``$IMAGENET_PATH/train900_pairs.jsonl``: one line per training class, ``{"class_id": str,
  "class_name": str, "samples": [36 paths], "neighbors": [[cls_id, cls_name, path] × 36]}``.
- ``$IMAGENET_PATH/test100_pairs.jsonl``: ``{"class_id", "class_name", "context_samples": [32],
  "test_samples": [rest]}``; lines are paired (2i ↔ 2i+1). The released blob is broken; it is
  rebuilt from the classes absent from train900 (``vlrepro data prepare imagenet``).
- Image paths are relative to the ImageNet CLS-LOC root (``train/<wnid>/<wnid>_N.JPEG``,
  ``val/ILSVRC2012_val_XXXXXXXX.JPEG``), which is ``$IMAGENET_PATH`` itself.
- ``$IMAGENET_PATH/map_clsloc.txt``: ``<wnid> <id 1..1000> <name>`` per line (devkit), ids of
  the train900/test100 ``class_id`` fields.
- ``$ISEKAI_PATH/ISEKAI-10.json``, ``ISEKAI-pair.json``: JSON Lines despite the extension;
  ``{"image_name", "positive_list", "negative_list", "positive_promt", "negative_promt",
  "label_name"}``, paths relative to the ISEKAI image root (``$ISEKAI_PATH``); even line count.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..paths import dataset_dir
from ._io import load_jsonl, malformed, need_keys, need_list, require
from .records import ClassRecord, EpisodeRecord, Neighbor, TestClassRecord

TRAIN_PAIRS = "train900_pairs.jsonl"
TEST_PAIRS = "test100_pairs.jsonl"
MAP_CLSLOC = "map_clsloc.txt"
ISEKAI_SUBSETS = {"ISEKAI-10": "ISEKAI-10.json", "ISEKAI-pair": "ISEKAI-pair.json"}
ISEKAI_KEYS = ("image_name", "positive_list", "negative_list", "positive_promt", "negative_promt", "label_name")


class ClsLoc(NamedTuple):
    """One ``map_clsloc.txt`` line: ``n02119789 1 kit_fox``."""

    wnid: str
    class_id: str
    name: str

    @property
    def display_name(self) -> str:
        """The name as LCL uses it: ``_`` → space (lower-casing happens at use)."""
        return self.name.replace("_", " ")


def load_imagenet_train(root: str | Path | None = None, filename: str = TRAIN_PAIRS) -> list[ClassRecord]:
    """``train900_pairs.jsonl`` in file order (item i of the LCL training set is line i)."""
    d = dataset_dir("imagenet", root)
    p = d / filename
    out = []
    for i, row in enumerate(load_jsonl(p, "imagenet", "LCL ImageNet-900 pairs file")):
        need_keys(row, ["class_id", "class_name", "samples", "neighbors"], p, "imagenet", f"line {i + 1}")
        neighbors = []
        for j, nb in enumerate(need_list(row["neighbors"], p, "imagenet", f"line {i + 1} 'neighbors'")):
            if not isinstance(nb, list) or len(nb) != 3:
                raise malformed(p, "imagenet", f"line {i + 1} neighbor {j} is not [class_id, class_name, image]")
            neighbors.append(Neighbor(str(nb[0]), str(nb[1]), str(nb[2])))
        samples = [str(s) for s in need_list(row["samples"], p, "imagenet", f"line {i + 1} 'samples'")]
        if not samples:
            raise malformed(p, "imagenet", f"line {i + 1} has no samples")
        out.append(ClassRecord(class_id=str(row["class_id"]), class_name=str(row["class_name"]),
                               samples=samples, neighbors=neighbors, image_root=d))
    return out


def load_imagenet_test(root: str | Path | None = None, filename: str = TEST_PAIRS) -> list[TestClassRecord]:
    """``test100_pairs.jsonl`` in file order; the line count must be even (classes are paired)."""
    d = dataset_dir("imagenet", root)
    p = d / filename
    out = []
    for i, row in enumerate(load_jsonl(p, "imagenet", "LCL ImageNet-100 pairs file")):
        need_keys(row, ["class_id", "class_name", "context_samples", "test_samples"], p, "imagenet", f"line {i + 1}")
        out.append(TestClassRecord(
            class_id=str(row["class_id"]), class_name=str(row["class_name"]),
            context_samples=[str(s) for s in need_list(row["context_samples"], p, "imagenet", f"line {i + 1}")],
            test_samples=[str(s) for s in need_list(row["test_samples"], p, "imagenet", f"line {i + 1}")],
            image_root=d))
    if len(out) % 2:
        raise malformed(p, "imagenet", f"{len(out)} lines, expected an even number (classes are paired 2i/2i+1)")
    return out


def imagenet_test_pairs(classes: list[TestClassRecord]) -> dict[str, str]:
    """Lower-cased positive name → paired class name (line 2i ↔ 2i+1), the metric's negative label."""
    out = {}
    for i in range(0, len(classes) - 1, 2):
        a, b = classes[i].class_name.lower(), classes[i + 1].class_name.lower()
        out[a], out[b] = b, a
    return out


def load_map_clsloc(root: str | Path | None = None, filename: str = MAP_CLSLOC) -> list[ClsLoc]:
    """The devkit's ``map_clsloc.txt`` (1000 lines ``wnid id name``), in file order."""
    p = require(dataset_dir("imagenet", root) / filename, "imagenet", "ImageNet class map")
    out = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit():
            raise malformed(p, "imagenet", f"line {lineno} is not '<wnid> <id> <name>'")
        out.append(ClsLoc(*parts))
    return out


def imagenet_test_classes(train: list[ClassRecord], class_map: list[ClsLoc]) -> list[ClsLoc]:
    """The ImageNet-100 test classes: every map_clsloc class whose id is absent from train900, by id."""
    train_ids = {c.class_id for c in train}
    return sorted((c for c in class_map if c.class_id not in train_ids), key=lambda c: int(c.class_id))


def load_episodes(path: str | Path, image_root: str | Path | None = None, *,
                  dataset: str = "isekai") -> list[EpisodeRecord]:
    """An ISEKAI-format JSON Lines file; ``image_root`` defaults to the file's folder."""
    p = Path(path)
    root = Path(image_root) if image_root is not None else p.parent
    out = []
    for i, row in enumerate(load_jsonl(p, dataset, "ISEKAI episode file")):
        need_keys(row, ISEKAI_KEYS, p, dataset, f"line {i + 1}")
        out.append(EpisodeRecord(
            image_name=str(row["image_name"]),
            positive_list=[str(s) for s in need_list(row["positive_list"], p, dataset, f"line {i + 1}")],
            negative_list=[str(s) for s in need_list(row["negative_list"], p, dataset, f"line {i + 1}")],
            positive_prompt=str(row["positive_promt"]), negative_prompt=str(row["negative_promt"]),
            label_name=str(row["label_name"]), image_root=root))
    if len(out) % 2:
        raise malformed(p, dataset, f"{len(out)} lines, expected an even number (episodes come in pairs)")
    return out


def load_isekai(subset: str = "ISEKAI-10", root: str | Path | None = None) -> list[EpisodeRecord]:
    """``ISEKAI-10`` or ``ISEKAI-pair`` from ``$ISEKAI_PATH`` (images relative to the same folder)."""
    if subset not in ISEKAI_SUBSETS:
        raise ValueError(f"unknown ISEKAI subset {subset!r}; known: {sorted(ISEKAI_SUBSETS)}")
    d = dataset_dir("isekai", root)
    return load_episodes(d / ISEKAI_SUBSETS[subset], d)
