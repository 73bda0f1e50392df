"""The LCL / ISEKAI accuracy rule (``LCLComputeMetrics.calculate_metric``, specs/lcl.md §3.2).

For each 2-way episode the model's answer (``pred``, the generated tokens after the prompt) is
compared with the query round's target text (``target``, e.g. ``[FINAL QUESTION]:  USER: … ASSISTANT:
there is "cactihog" in the image.</s>``):

* target label = text after the last ``ASSISTANT:`` and before ``</s>``, with ``The answer is``,
  ``there is``, ``in the image``, ``"``, ``'`` and ``.`` removed, stripped, lower-cased
  (:func:`extract_label`);
* negative label = the other class of the episode's pair: for ISEKAI the other of the line's
  lower-cased ``[positive_promt, negative_promt]`` (``ISEKAIMetrics.get_neg_pair``), for
  ImageNet-100 the paired class of ``test100_pairs.jsonl`` (lines 2i and 2i+1);
* correct iff the label is a substring of the **raw** prediction (case-sensitive: the label is
  lower-case, the prediction is not lower-cased) and, once the label's occurrences are deleted
  from the prediction, the negative label is not a substring (so ``airstone`` is not rejected
  for containing the negative ``stone``);
* ``accuracy = correct / N`` over all rows, including those whose target could not be read
  (``target_failed``); ``failed`` counts predictions that are not text.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import MalformedFileError, VlreproError, read_jsonl
from . import emit_result

__all__ = [
    "extract_label",
    "lcl_correct",
    "isekai_negative",
    "lcl_accuracy",
    "load_isekai_pairs",
    "load_imagenet_pairs",
    "add_arguments",
    "main",
]

_PRED_FIX = 'use the multitest_<KEY>_extra_prediction.jsonl written by LCL evaluation: one {"pred": str, "target": str} per line'


def extract_label(text: Any) -> str | None:
    """``LCLComputeMetrics.extract_target``: the class label in a target text, or ``None``.

    ``'… ASSISTANT: there is "water ouzel" in the image.</s>'`` -> ``"water ouzel"``; a bare label
    comes back lower-cased. ``None`` for a non-string (the original's caught ``AttributeError``).
    """
    if not isinstance(text, str):
        return None
    found = text.split("ASSISTANT:")[-1].split("</s>")[0]
    found = found.replace("The answer is", "")
    found = found.replace("there is", "").replace("in the image", "")
    return found.replace('"', "").replace("'", "").replace(".", "").strip().lower()


def lcl_correct(pred: str, target: str, negative: str) -> bool:
    """Whether ``pred`` names the target class and not the negative one (the §3.2 rule).

    Args:
        pred: the raw generated answer (not lower-cased: matching is case-sensitive).
        target: the target text of the query round, or a bare label; it goes through
            :func:`extract_label`.
        negative: the negative class label, used as given (the original lower-cases it when
            reading the pairs; :func:`load_isekai_pairs`/:func:`load_imagenet_pairs` do too).
    """
    label = extract_label(target)
    if label is None or not isinstance(pred, str):
        return False
    return _rule(pred, label, negative)


def _rule(pred: str, label: str, negative: str) -> bool:
    return label in pred and negative not in pred.replace(label, "")


def isekai_negative(pair: Sequence[str], label: str) -> str:
    """``ISEKAIMetrics.get_neg_pair``: the last name of the pair that differs from ``label``."""
    negative = None
    for name in pair:
        if name != label:
            negative = name
    if negative is None:  # the original raises UnboundLocalError here
        raise VlreproError(f"ISEKAI pair {list(pair)!r} has no class other than {label!r}")
    return negative


def lcl_accuracy(
    rows: Sequence[Mapping[str, Any]],
    *,
    negatives: Sequence[Sequence[str]] | Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Accuracy of LCL predictions under the §3.2 rule.

    Args:
        rows: ``{"pred": str, "target": str}`` per episode, in data set order (the order of
            ``multitest_<KEY>_extra_prediction.jsonl``); a row may carry its own ``"negative"``.
        negatives: where the negative labels come from when rows do not carry them: a sequence
            of lower-cased ``[positive_promt, negative_promt]`` pairs aligned with ``rows``
            (ISEKAI, :func:`load_isekai_pairs`), or a mapping from a lower-cased class name to
            its paired class (ImageNet-100, :func:`load_imagenet_pairs`). A target label that is
            not a key as written is looked up in :func:`extract_label`'s form of the keys, since
            that drops quotes and periods (``"potter's wheel"`` -> ``"potters wheel"``).

    Returns:
        ``{"accuracy": correct / n, "correct", "n", "target_failed", "failed"}``.
    """
    if not rows:
        raise VlreproError("LCL predictions are empty: nothing to score", fix=_PRED_FIX)
    is_pairs = negatives is not None and not isinstance(negatives, Mapping)
    if is_pairs and len(negatives) != len(rows):  # type: ignore[arg-type]
        hint = " (the evaluation appends to the file: a re-run duplicates it)" if len(rows) % max(len(negatives), 1) == 0 else ""  # type: ignore[arg-type]
        raise VlreproError(
            f"{len(rows)} predictions for {len(negatives)} ISEKAI lines{hint}",  # type: ignore[arg-type]
            fix="score the prediction file of this data set, written once",
        )
    correct = target_failed = failed = 0
    aliases: dict[str | None, str] | None = None
    for idx, row in enumerate(rows):
        label = extract_label(row.get("target"))
        if label is None:
            target_failed += 1
            continue
        pred = row.get("pred")
        if not isinstance(pred, str):
            failed += 1  # the original counts it, then crashes on ``in``; here it is just wrong
            continue
        if "negative" in row:
            negative = str(row["negative"])
        elif negatives is None:
            raise VlreproError(f"LCL row {idx} has no negative label", fix="pass the ISEKAI file (--isekai) or the ImageNet pairs (--imagenet-pairs)")
        elif isinstance(negatives, Mapping):
            if label in negatives:
                negative = negatives[label]
            else:
                # extract_label drops quotes and periods ("potter's wheel" -> "potters wheel"); the
                # pairs keep the class name as written, so look it up in the same normal form.
                if aliases is None:
                    aliases = {extract_label(name): other for name, other in negatives.items()}
                if label not in aliases:
                    raise VlreproError(f"target class {label!r} (row {idx}) is not in the ImageNet pairs", fix="pass the test100_pairs.jsonl used for the evaluation")
                negative = aliases[label]
        else:
            negative = isekai_negative(negatives[idx], label)
        correct += _rule(pred, label, negative)
    n = len(rows)
    return {"accuracy": correct / n, "correct": correct, "n": n, "target_failed": target_failed, "failed": failed}


# --------------------------------------------------------------------------------------------
# files and command line


def _read_jsonl(path: str, *, what: str, fix: str) -> list[Any]:
    try:
        return read_jsonl(path, what=what, fix=fix)
    except UnicodeDecodeError as e:
        raise MalformedFileError(f"{what} is not UTF-8 text: {path} ({e})", fix=fix) from None


def load_isekai_pairs(path: str) -> list[list[str]]:
    """Lower-cased ``[positive_promt, negative_promt]`` per line of ``ISEKAI-10.json``/``ISEKAI-pair.json`` (JSON Lines)."""
    fix = "use ISEKAI-10.json / ISEKAI-pair.json from the HF data sets ISEKAI-Portal/ISEKAI-10, ISEKAI-Portal/ISEKAI-pair"
    pairs = []
    for i, row in enumerate(_read_jsonl(path, what="ISEKAI file", fix=fix)):
        if not isinstance(row, dict) or not isinstance(row.get("positive_promt"), str) or not isinstance(row.get("negative_promt"), str):
            raise MalformedFileError(f"ISEKAI line {i + 1} lacks positive_promt/negative_promt: {path}", fix=fix)
        pairs.append([row["positive_promt"].lower(), row["negative_promt"].lower()])
    return pairs


def load_imagenet_pairs(path: str) -> dict[str, str]:
    """``{class name: paired class name}`` (both lower-cased) from ``test100_pairs.jsonl``: lines 2i and 2i+1 pair up."""
    fix = "use the test100_pairs.jsonl of the evaluation (100 lines, classes paired 2i <-> 2i+1)"
    names = []
    for i, row in enumerate(_read_jsonl(path, what="ImageNet-100 pairs file", fix=fix)):
        if not isinstance(row, dict) or not isinstance(row.get("class_name"), str):
            raise MalformedFileError(f"pairs line {i + 1} has no class_name: {path}", fix=fix)
        names.append(row["class_name"].lower())
    if len(names) % 2:
        raise MalformedFileError(f"pairs file has an odd number of classes ({len(names)}): {path}", fix=fix)
    mapping = {}
    for a, b in zip(names[0::2], names[1::2], strict=True):
        mapping[a], mapping[b] = b, a
    return mapping


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vlrepro eval lcl``."""
    parser.add_argument("--predictions", required=True, help='multitest_<KEY>_extra_prediction.jsonl: {"pred", "target"} per line')
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--isekai", help="ISEKAI-10.json or ISEKAI-pair.json (JSON Lines), in the order the predictions were made")
    src.add_argument("--imagenet-pairs", help="test100_pairs.jsonl of the ImageNet-100 evaluation")
    parser.add_argument("--out", help="also write the JSON object to this file (atomically)")


def main(args: argparse.Namespace) -> int:
    """Print ``{"accuracy", "correct", "n", "target_failed", "failed"}`` as one JSON object."""
    rows = _read_jsonl(args.predictions, what="LCL predictions file", fix=_PRED_FIX)
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "pred" not in row or "target" not in row:
            raise MalformedFileError(f"LCL predictions line {i + 1} is not an object with pred and target: {args.predictions}", fix=_PRED_FIX)
    negatives: Sequence[Sequence[str]] | Mapping[str, str] | None = None
    if args.isekai:
        negatives = load_isekai_pairs(args.isekai)
    elif args.imagenet_pairs:
        negatives = load_imagenet_pairs(args.imagenet_pairs)
    return emit_result(lcl_accuracy(rows, negatives=negatives), args.out)
