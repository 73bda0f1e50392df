"""MME scores (``eval_tool/calculation.py`` of the MME benchmark), grouped by image.

The official tool reads ``<results_dir>/<subtask>.txt`` for the 14 subtasks, one line per
question, ``image\\tquestion\\tgt\\tpred``. Each image has two yes/no questions. Per subtask:

* ``acc``: fraction of questions whose parsed prediction equals the (lower-cased) ground truth;
  an unparseable answer ("other") counts as wrong;
* ``acc_plus``: fraction of images with *both* questions right;
* ``score = acc*100 + acc_plus*100`` (max 200).

``perception`` sums the 10 perception subtasks (max 2000), ``cognition`` the 4 cognition ones
(max 800). The parser (:func:`parse_yes_no`, ``parse_pred_ans``) lower-cases the answer, takes
exactly ``yes``/``no``, else looks for ``"yes"`` and then ``"no"`` in its first 4 characters
(``"Not sure"`` -> no, ``"The answer is yes"`` -> other). The official tool pairs *adjacent
lines* (``divide_chunks(n=2)``), which silently mis-pairs a reordered file; we group the two
questions by ``(subtask, image)`` instead, which is the same on well-formed files, and report
the "other" counts. ``rule="word"`` is the VLMEvalKit-style alternative (yes/no as a word,
anywhere), offered as an option, never the default.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import MalformedFileError, MissingFileError, VlreproError
from . import emit_result

__all__ = ["PERCEPTION", "COGNITION", "parse_yes_no", "mme_scores", "read_results_dir", "add_arguments", "main"]

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
RULES = ("official", "word")
_WORDS = re.compile(r"[a-z]+")


def parse_yes_no(text: str, rule: str = "official") -> str:
    """``"yes"``, ``"no"`` or ``"other"`` for a model answer.

    ``official`` (``calculate_metrics.parse_pred_ans`` on the lower-cased answer): exactly
    ``yes``/``no``; else ``"yes"`` in the first 4 characters; else ``"no"`` in them; else other.
    Nothing is stripped: the official tool sees ``"yes\\n"`` (the line end) and ``" yes"``
    alike through the 4-character window, but ``"  yes"`` falls outside it.

    ``word``: ``yes`` as a word and no ``no`` -> yes; ``no`` and no ``yes`` -> no; else other.
    """
    t = text.lower()
    if rule == "official":
        if t in ("yes", "no"):
            return t
        head = t[:4]
        if "yes" in head:
            return "yes"
        if "no" in head:
            return "no"
        return "other"
    if rule == "word":
        words = set(_WORDS.findall(t))
        if "yes" in words and "no" not in words:
            return "yes"
        if "no" in words and "yes" not in words:
            return "no"
        return "other"
    raise VlreproError(f"unknown MME parsing rule {rule!r}", fix=f"use one of {', '.join(RULES)}")


def mme_scores(rows: Sequence[Mapping[str, Any]], *, rule: str = "official") -> dict[str, Any]:
    """MME acc, acc+ and score per subtask, with perception and cognition totals.

    Args:
        rows: one dict per question with ``subtask``, ``image``, ``question``, ``gt`` (yes/no,
            any case) and ``pred`` (the raw model answer; anything but text, e.g. ``None``, is "other").
        rule: yes/no parser, ``"official"`` (default) or ``"word"``; see :func:`parse_yes_no`.

    Returns:
        ``{"perception": float, "cognition": float, "total": float, "other": int,
        "subtasks": {name: {"acc", "acc_plus", "score", "questions", "images", "other"}},
        "missing_subtasks": [...]}``; a total sums the subtasks present (check
        ``missing_subtasks`` before comparing with a paper).

    Raises:
        VlreproError: no rows, an unknown subtask, a ground truth other than yes/no, or an image
            that does not have exactly two questions (the official tool asserts the same).
    """
    if rule not in RULES:
        raise VlreproError(f"unknown MME parsing rule {rule!r}", fix=f"use one of {', '.join(RULES)}")
    if not rows:
        raise VlreproError("MME results are empty: nothing to score")
    known = set(PERCEPTION) | set(COGNITION)
    by_task: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for i, row in enumerate(rows):
        try:
            task, image, gt, pred = row["subtask"], row["image"], row["gt"], row["pred"]
        except KeyError as e:
            raise MalformedFileError(f"MME row {i} has no {e.args[0]!r}") from None
        if task not in known:
            raise VlreproError(f"unknown MME subtask {task!r}", fix=f"use the 14 official names: {', '.join(PERCEPTION + COGNITION)}")
        gt_l = str(gt).strip().lower()
        if gt_l not in ("yes", "no"):
            raise MalformedFileError(f"MME {task}: ground truth of {image} is {gt!r}, not yes/no")
        # a missing answer (None) is "other", not str(None) = "none" -> "no"
        parsed = parse_yes_no(pred, rule) if isinstance(pred, str) else "other"
        by_task.setdefault(task, {}).setdefault(str(image), []).append((gt_l, parsed))

    subtasks: dict[str, dict[str, Any]] = {}
    for task in PERCEPTION + COGNITION:
        if task not in by_task:
            continue
        images = by_task[task]
        n_q = right = right_images = other = 0
        for image, qa in images.items():
            if len(qa) != 2:
                raise MalformedFileError(
                    f"MME {task}: image {image} has {len(qa)} questions, the benchmark has 2 per image",
                    fix="check for duplicated or missing lines (e.g. a re-run appended to the file)",
                )
            hits = sum(gt == pred for gt, pred in qa)
            n_q += len(qa)
            right += hits
            right_images += hits == len(qa)
            other += sum(pred == "other" for _, pred in qa)
        acc = right / n_q
        acc_plus = right_images / len(images)
        score = 0.0
        score += acc * 100  # process_result adds acc*100 then acc_plus*100, in that order
        score += acc_plus * 100
        subtasks[task] = {"acc": acc, "acc_plus": acc_plus, "score": score, "questions": n_q, "images": len(images), "other": other}

    def total(names: Sequence[str]) -> float:
        s = 0.0
        for name in names:
            if name in subtasks:
                s += subtasks[name]["score"]
        return s

    perception, cognition = total(PERCEPTION), total(COGNITION)
    return {
        "perception": perception,
        "cognition": cognition,
        "total": perception + cognition,
        "other": sum(s["other"] for s in subtasks.values()),
        "subtasks": subtasks,
        "missing_subtasks": [t for t in PERCEPTION + COGNITION if t not in subtasks],
    }


# --------------------------------------------------------------------------------------------
# files and command line


def read_results_dir(results_dir: str | Path, *, allow_missing: bool = False) -> list[dict[str, str]]:
    """Rows from the official layout: ``<results_dir>/<subtask>.txt``, ``image\\tquestion\\tgt\\tpred``.

    The answer keeps its line end stripped only of ``\\r\\n``/``\\n`` (the official tool keeps the
    newline, which its 4-character rule reads the same way); a tab inside the answer stays in it.
    """
    root = Path(results_dir)
    fix = "write one <subtask>.txt per MME subtask with lines image<TAB>question<TAB>gt<TAB>pred (MME eval_tool layout)"
    if not root.is_dir():
        raise MissingFileError(f"MME results directory not found: {root}", fix=fix)
    rows: list[dict[str, str]] = []
    missing = []
    for task in PERCEPTION + COGNITION:
        path = root / f"{task}.txt"
        if not path.is_file():
            missing.append(task)
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise MalformedFileError(f"MME results file is not UTF-8 text: {path} ({e})", fix=fix) from None
        # read_text translates \r\n and \r to \n, as the official readlines() does.
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            parts = line.split("\t", 3)
            if len(parts) != 4:
                raise MalformedFileError(f"{path} line {lineno} does not have 4 tab-separated fields", fix=fix)
            image, question, gt, pred = parts
            rows.append({"subtask": task, "image": image, "question": question, "gt": gt, "pred": pred})
    if len(missing) == len(PERCEPTION + COGNITION):
        raise MissingFileError(f"no MME subtask file (<subtask>.txt) in {root}", fix=fix)
    if missing and not allow_missing:
        raise MissingFileError(
            f"MME results for {len(missing)} subtasks are missing in {root}: {', '.join(missing)}",
            fix="evaluate all 14 subtasks, or pass --allow-missing to total the ones present",
        )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vlrepro eval mme``."""
    parser.add_argument("--results-dir", required=True, help="directory with one <subtask>.txt per subtask (image\\tquestion\\tgt\\tpred)")
    parser.add_argument("--rule", choices=RULES, default="official", help="yes/no parser: official 4-character rule (default) or word-level")
    parser.add_argument("--allow-missing", action="store_true", help="score the subtasks present instead of failing on missing ones")
    parser.add_argument("--out", help="also write the JSON object to this file (atomically)")


def main(args: argparse.Namespace) -> int:
    """Print the MME scores as one JSON object."""
    rows = read_results_dir(args.results_dir, allow_missing=args.allow_missing)
    return emit_result(mme_scores(rows, rule=args.rule), args.out)
