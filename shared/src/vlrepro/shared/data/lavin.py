"""The LaVIN-lineage files ADEM-VL trains on (specs/ademvl.md §4).

- BLIP's Karpathy caption files ``coco_karpathy_{train,val,test}.json`` (``<data_root>/coco_caption/``):
  train is one entry per caption ``{"image": "train2014/COCO_train2014_….jpg", "caption": str,
  "image_id": "coco_<id>"}``; val/test one entry per image ``{"image", "caption": [str, …]}``
  (the COCO id is the number at the end of the file name). ``coco_karpathy_{val,test}_gt.json``
  are COCO-format references for COCOEvalCap. Images are relative to ``<data_root>/images``.
- LaVIN's ``all_data.json``: ``{"all": [{"qid", "instruction": "Instruction: …\\nResponse:",
  "answer", "image": COCO file name | null, "image_source": "mscoco" | null, "options": null}]}``;
  ADEM-VL opens ``<data_root>/cocoimages/train/COCO_train2014_<image>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import MalformedFileError
from ._io import load_json, malformed, need_keys, need_list
from .records import CaptionRecord, open_rgb

BLIP_SPLITS = ("train", "val", "test")


def load_blip_karpathy(path: str | Path, image_root: str | Path, split: str | None = None) -> list[CaptionRecord]:
    """A BLIP Karpathy file as one record per image (train captions grouped), sorted by image id.

    ``split`` (train/val/test) defaults to the one in the file name ``coco_karpathy_<split>.json``.
    """
    p = Path(path)
    split = split or p.stem.rsplit("_", 1)[-1]
    items = need_list(load_json(p, "coco", "BLIP Karpathy caption file"), p, "coco", "top level")
    by_image: dict[int, tuple[str, list[str]]] = {}
    for i, it in enumerate(items):
        need_keys(it, ["image", "caption"], p, "coco", f"entry {i}")
        m = re.search(r"(\d+)\.\w+$", str(it["image"]))
        if not m:
            raise malformed(p, "coco", f"entry {i} image {it['image']!r} has no COCO id in its name")
        caps = it["caption"] if isinstance(it["caption"], list) else [it["caption"]]
        by_image.setdefault(int(m.group(1)), (str(it["image"]), []))[1].extend(str(c) for c in caps)
    root = Path(image_root)
    return [CaptionRecord(image_id=iid, captions=caps, image_path=root / rel, split=split, file_name=Path(rel).name)
            for iid, (rel, caps) in sorted(by_image.items())]


@dataclass(frozen=True)
class InstructionRecord:
    """One LaVIN ``all_data.json`` item (Alpaca text-only or a single LLaVA-Instruct turn)."""

    qid: str
    instruction: str
    answer: str
    image_path: Path | None
    image_source: str | None = None

    @property
    def has_image(self) -> bool:
        return self.image_path is not None

    def load_image(self) -> Image.Image:
        if self.image_path is None:
            raise MalformedFileError(f"LaVIN item {self.qid} is text-only (image is null)")
        return open_rgb(self.image_path, dataset="coco")


def load_lavin_instructions(path: str | Path, image_dir: str | Path) -> list[InstructionRecord]:
    """``all_data.json`` in file order; image path ``image_dir/COCO_train2014_<image>`` as ADEM-VL opens it."""
    p = Path(path)
    doc = need_keys(load_json(p, "scienceqa", "LaVIN instruction file"), ["all"], p, "scienceqa", "top level")
    out = []
    for i, it in enumerate(need_list(doc["all"], p, "scienceqa", "'all'")):
        need_keys(it, ["qid", "instruction", "answer"], p, "scienceqa", f"item {i}")
        image = it.get("image")
        out.append(InstructionRecord(qid=str(it["qid"]), instruction=str(it["instruction"]), answer=str(it["answer"]),
                                     image_path=Path(image_dir) / f"COCO_train2014_{image}" if image else None,
                                     image_source=it.get("image_source")))
    return out
