"""LLaVA-format conversation JSON (LLaVA-Pretrain 558k, mix665k, ShareGPT4V, SQ-LLaVA's data).

A JSON list of ``{"id": str, "image": "relative/path.jpg" (absent for text-only),
"conversations": [{"from": "human"|"gpt", "value": str}, …]}``; the first human value of an
image item contains ``<image>``. Image paths are relative to ``--image_folder``.
"""

from __future__ import annotations

from pathlib import Path

from ..paths import dataset_dir
from ._io import load_json, malformed, need_keys, need_list
from .records import ConversationRecord

PRETRAIN_JSON = "blip_laion_cc_sbu_558k.json"
INSTRUCT_JSON = "llava_v1_5_mix665k.json"
ROLES = ("human", "gpt")


def llava_paths(root: str | Path | None = None) -> dict[str, Path]:
    """``pretrain``/``instruct`` JSON and the ``images`` folder under ``$LLAVA_DATA_PATH``."""
    d = dataset_dir("llava", root)
    return {"pretrain": d / PRETRAIN_JSON, "instruct": d / INSTRUCT_JSON, "images": d / "images"}


def load_llava(json_path: str | Path, image_folder: str | Path | None = None) -> list[ConversationRecord]:
    """Every item of a LLaVA JSON, in file order; ``image_folder`` defaults to ``$LLAVA_DATA_PATH/images``."""
    p = Path(json_path)
    folder = Path(image_folder) if image_folder is not None else llava_paths()["images"]
    items = need_list(load_json(p, "llava", "LLaVA data file"), p, "llava", "top level")
    out = []
    for i, it in enumerate(items):
        need_keys(it, ["conversations"], p, "llava", f"item {i}")
        conv = need_list(it["conversations"], p, "llava", f"item {i} 'conversations'")
        for j, turn in enumerate(conv):
            need_keys(turn, ["from", "value"], p, "llava", f"item {i} turn {j}")
            if turn["from"] not in ROLES:
                raise malformed(p, "llava", f"item {i} turn {j} 'from' is {turn['from']!r}, expected human or gpt")
        if not conv:
            raise malformed(p, "llava", f"item {i} has no conversation turns")
        image = it.get("image")
        if image and "<image>" not in conv[0]["value"]:
            raise malformed(p, "llava", f"item {i} has an image but its first turn has no <image>")
        out.append(ConversationRecord(id=str(it.get("id", i)), image_path=(folder / image) if image else None,
                                      conversations=[dict(t) for t in conv]))
    return out
