"""ScienceQA (lupantech/ScienceQA) as ADEM-VL/LaVIN read it.

``problems.json``: ``{pid: {"question", "choices": [...], "answer": int, "hint", "image":
"image.png"|null, "task", "grade": "grade1…12", "subject", "topic", "category", "skill",
"lecture", "solution", "split"}}``; ``pid_splits.json``: ``{"train": [pid…], "val", "test",
"minitrain", …}``; ``captions.json``: ``{"captions": {pid: text}}``; images at
``$SCIENCEQA_PATH/images/{split}/{pid}/image.png``. (ADEM-VL's README says ``problem.json``;
its code opens ``problems.json``.)
"""

from __future__ import annotations

from pathlib import Path

from ..paths import dataset_dir
from ._io import load_json, malformed, need_keys, need_list
from .records import ScienceQARecord

PROBLEM_KEYS = ("question", "choices", "answer", "hint", "image", "grade", "subject", "lecture", "solution")


def scienceqa_paths(root: str | Path | None = None) -> dict[str, Path]:
    d = dataset_dir("scienceqa", root)
    return {"problems": d / "problems.json", "pid_splits": d / "pid_splits.json",
            "captions": d / "captions.json", "images": d / "images"}


def load_scienceqa(split: str = "test", root: str | Path | None = None, *,
                   captions: bool = True) -> list[ScienceQARecord]:
    """The problems of ``split`` in ``pid_splits.json`` order (eval_sqa asserts 4,241 test results).

    ``captions=False`` skips ``captions.json`` (the training default, CQM-A without captions).
    """
    p = scienceqa_paths(root)
    problems = load_json(p["problems"], "scienceqa", "ScienceQA problems file")
    if not isinstance(problems, dict):
        raise malformed(p["problems"], "scienceqa", "top level is not an object keyed by pid")
    splits = load_json(p["pid_splits"], "scienceqa", "ScienceQA split file")
    if not isinstance(splits, dict) or split not in splits:
        known = sorted(splits) if isinstance(splits, dict) else []
        raise malformed(p["pid_splits"], "scienceqa", f"no split {split!r} (has {known})")
    caps: dict = {}
    if captions:
        doc = need_keys(load_json(p["captions"], "scienceqa", "ScienceQA captions file"), ["captions"],
                        p["captions"], "scienceqa", "top level")
        caps = doc["captions"]
    out = []
    for pid in need_list(splits[split], p["pid_splits"], "scienceqa", f"split {split!r}"):
        pid = str(pid)
        if pid not in problems:
            raise malformed(p["problems"], "scienceqa", f"pid {pid} of pid_splits.json[{split!r}] is missing")
        out.append(_record(pid, problems[pid], split, caps, p))
    return out


def _record(pid: str, prob: dict, split: str, caps: dict, p: dict[str, Path]) -> ScienceQARecord:
    need_keys(prob, PROBLEM_KEYS, p["problems"], "scienceqa", f"problem {pid}")
    choices = [str(c) for c in need_list(prob["choices"], p["problems"], "scienceqa", f"problem {pid} choices")]
    answer = prob["answer"]
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise malformed(p["problems"], "scienceqa", f"problem {pid} answer {answer!r} is not an index into its choices")
    # the image folder is the problem's own split (a pid lives in exactly one of train/val/test)
    img_split = prob.get("split", split)
    image = prob.get("image")
    return ScienceQARecord(
        pid=pid, question=str(prob["question"]), choices=choices, answer=answer,
        hint=str(prob.get("hint") or ""),
        image_path=(p["images"] / img_split / pid / image) if image else None,
        subject=str(prob["subject"]), grade=str(prob["grade"]),
        lecture=str(prob.get("lecture") or ""), solution=str(prob.get("solution") or ""),
        caption=str(caps.get(pid, "")), split=split,
        topic=str(prob.get("topic", "")), category=str(prob.get("category", "")), skill=str(prob.get("skill", "")),
    )
