"""COCO captions (official ``captions_{split}{year}.json``) and Karpathy's ``dataset_coco.json``.

Official captions file: ``{"info", "licenses", "images": [{"id", "file_name", "height", "width",
…}], "annotations": [{"id", "image_id", "caption"}]}``; layout (Lever-LM README)
``$COCO_PATH/mscoco{year}/{split}{year}/<file_name>`` and ``…/annotations/captions_{split}{year}.json``.
Karpathy file: ``{"dataset": "coco", "images": [{"filepath", "filename", "imgid", "split"
(train/val/test/restval), "cocoid", "sentids", "sentences": [{"raw", "tokens", …}]}]}``.
"""

from __future__ import annotations

from pathlib import Path

from ..paths import dataset_dir, getenv
from ._io import load_json, malformed, need_keys, need_list
from .records import CaptionRecord

COCO_YEARS = (2014, 2017)
KARPATHY_SPLITS = ("train", "val", "test", "restval")


def coco_caption_paths(year: int, split: str, root: str | Path | None = None) -> tuple[Path, Path]:
    """``(annotation JSON, image folder)`` of COCO ``year`` ∈ {2014, 2017}, ``split`` ∈ {train, val}."""
    if int(year) not in COCO_YEARS:
        raise ValueError(f"unknown COCO year {year!r}; known: {COCO_YEARS}")
    if split not in ("train", "val"):
        raise ValueError(f"unknown COCO caption split {split!r}; known: ('train', 'val')")
    base = dataset_dir("coco", root) / f"mscoco{year}"
    return base / "annotations" / f"captions_{split}{year}.json", base / f"{split}{year}"


def load_coco_captions(year: int = 2017, split: str = "val", root: str | Path | None = None) -> list[CaptionRecord]:
    """One record per image with all its captions (annotation file order), sorted by ``image_id``.

    ``root`` overrides ``COCO_PATH`` (the parent of ``mscoco{year}``).
    """
    ann_path, image_dir = coco_caption_paths(year, split, root)
    doc = need_keys(load_json(ann_path, "coco", "COCO captions file"), ["images", "annotations"],
                    ann_path, "coco", "top level")
    images: dict[int, str] = {}
    for i, im in enumerate(need_list(doc["images"], ann_path, "coco", "'images'")):
        need_keys(im, ["id", "file_name"], ann_path, "coco", f"image {i}")
        images[int(im["id"])] = str(im["file_name"])
    caps: dict[int, list[str]] = {iid: [] for iid in images}
    for i, a in enumerate(need_list(doc["annotations"], ann_path, "coco", "'annotations'")):
        need_keys(a, ["image_id", "caption"], ann_path, "coco", f"annotation {i}")
        iid = int(a["image_id"])
        if iid not in caps:
            raise malformed(ann_path, "coco", f"annotation {i} names image_id {iid}, absent from 'images'")
        caps[iid].append(str(a["caption"]))
    return [CaptionRecord(image_id=iid, captions=caps[iid], image_path=image_dir / images[iid],
                          split=split, file_name=images[iid])
            for iid in sorted(images) if caps[iid]]


def karpathy_path(root: str | Path | None = None) -> Path:
    """``KARPATHY_COCO_PATH`` (a file, or a folder holding dataset_coco.json), else ``$COCO_PATH/dataset_coco.json``."""
    if root is None and getenv("KARPATHY_COCO_PATH"):
        p = Path(getenv("KARPATHY_COCO_PATH")).expanduser()
        return p / "dataset_coco.json" if p.is_dir() else p
    return dataset_dir("coco", root) / "dataset_coco.json"


def load_karpathy(path: str | Path | None = None, split: str = "test", image_root: str | Path | None = None,
                  *, restval_as_train: bool = True) -> list[CaptionRecord]:
    """Karpathy-split COCO captions; image path ``image_root/filepath/filename``; sorted by ``cocoid``.

    ``image_root`` defaults to ``$COCO_PATH/mscoco2014`` (``filepath`` is ``train2014``/``val2014``).
    With ``restval_as_train`` (the usual 113k "train"), ``split="train"`` includes ``restval``.
    """
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"unknown Karpathy split {split!r}; known: {KARPATHY_SPLITS}")
    p = Path(path) if path is not None else karpathy_path()
    img_root = Path(image_root) if image_root is not None else dataset_dir("coco") / "mscoco2014"
    doc = need_keys(load_json(p, "coco", "Karpathy split file"), ["images"], p, "coco", "top level")
    wanted = {split, "restval"} if (split == "train" and restval_as_train) else {split}
    out = []
    for i, im in enumerate(need_list(doc["images"], p, "coco", "'images'")):
        need_keys(im, ["filepath", "filename", "split", "cocoid", "sentences"], p, "coco", f"image {i}")
        if im["split"] not in wanted:
            continue
        sents = need_list(im["sentences"], p, "coco", f"image {i} 'sentences'")
        captions = [str(need_keys(s, ["raw"], p, "coco", f"image {i} sentence")["raw"]) for s in sents]
        out.append(CaptionRecord(image_id=int(im["cocoid"]), captions=captions,
                                 image_path=img_root / im["filepath"] / im["filename"],
                                 split=str(im["split"]), file_name=str(im["filename"])))
    out.sort(key=lambda r: r.image_id)
    return out
