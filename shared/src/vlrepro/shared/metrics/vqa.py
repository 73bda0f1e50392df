"""VQA accuracy, as computed by the official VQA evaluation and by OpenFlamingo's copy of it.

Two reference implementations exist and the papers of this monorepo use both:

``mode="official"`` — GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``
(master, commit c4e6a0e), ``VQAEval.evaluate``:

* the prediction: ``\\n`` and ``\\t`` become spaces, ``strip()``, then ``processPunctuation`` and
  ``processDigitArticle`` — always;
* the ground-truth answers: if the answers of a question are *not all identical*, each one goes
  through ``processPunctuation`` only (no lower-casing, no number words, no articles: the
  annotation answers were already normalised when the data set was built); if all are identical
  they are compared raw. So ten times ``"Dog."`` never matches anything, not even ``"Dog."``;
* per question: for each of the n answers, ``min(1, #matches among the other n-1 / 3)``, averaged;
  the "other answers" are selected by dict inequality, which for answer dicts that carry a unique
  ``answer_id`` (VQAv2, OK-VQA) is plain index-based leave-one-out — what we compute;
* ``overall`` and the per-question-type / per-answer-type means are ``round(100*mean, 2)``.

``mode="openflamingo"`` — ``open_flamingo/eval/vqa_metric.py`` (also vendored by Lever-LM and
LIVE): the ``\\n``/``\\t``/``strip`` clean-up and *both* normalisation steps are applied to every
ground-truth answer and to the prediction, always (the "all identical" guard is gone); the
leave-one-out keeps the dict-inequality quirk (answer dicts without ``answer_id``, e.g. VizWiz,
drop all identical answers together), and a missing ``answer_type`` counts as ``"other"``.

Both scripts mutate the annotations in place; we never do. Normalisation helpers are cached
(:func:`functools.lru_cache`) and skip the 21 ``str.replace`` calls when a string has no
punctuation at all, which keeps a full VQAv2 val run (214k questions) at a few seconds.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from ..errors import MalformedFileError, VlreproError, read_json
from . import emit_result, gc_paused

__all__ = [
    "normalize_answer",
    "process_punctuation",
    "process_digit_article",
    "postprocess_vqa_generation",
    "vqa_accuracy",
    "vqa_per_question_accuracy",
    "load_vqa_files",
    "add_arguments",
    "main",
]

MODES = ("official", "openflamingo")

# The official table, shipped as package data (a copy of specs/vqa_contractions.json).
CONTRACTIONS: dict[str, str] = json.loads(
    resources.files(__package__).joinpath("vqa_contractions.json").read_text(encoding="utf-8")
)
MANUAL_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
# vqaEval.py ``self.punct`` (master): note that neither "'" nor ":" is in it.
PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
# ``(?!<=\d)`` is a typo for a look-behind and matches everywhere: any "." not followed by a digit.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
# The official call is ``periodStrip.sub("", outText, re.UNICODE)``: the flag lands in the
# positional ``count`` argument, so only the first 32 periods are removed. Kept on purpose.
_PERIOD_COUNT = int(re.UNICODE)
_ANY_PUNCT = re.compile("[" + re.escape("".join(PUNCT)) + ".]")

_RESULTS_FIX = 'write the official results format: a JSON list of {"question_id": int, "answer": str}'


@cache
def process_punctuation(text: str) -> str:
    """``VQAEval.processPunctuation``.

    Each punctuation mark is deleted if it touches a space anywhere in the *input* (``"p "`` or
    ``" p"``) or if the input contains a digit-comma-digit (``"1,000"``); otherwise it is replaced
    by a space. Then periods not followed by a digit are removed (the first 32 of them).
    """
    if _ANY_PUNCT.search(text) is None:  # fast path: nothing any rule below would touch
        return text
    out = text
    has_digit_comma = _COMMA_STRIP.search(text) is not None
    for p in PUNCT:
        if has_digit_comma or (p + " " in text) or (" " + p in text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, _PERIOD_COUNT)


@cache
def process_digit_article(text: str) -> str:
    """``VQAEval.processDigitArticle``: lower-case, number words ``none..ten`` to digits, drop
    ``a/an/the``, expand contractions (``dont`` -> ``don't``), re-join on single spaces."""
    words = []
    for word in text.lower().split():
        word = MANUAL_MAP.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


@cache
def normalize_answer(ans: str) -> str:
    """The full normalisation applied to a prediction by the official script.

    ``\\n``/``\\t`` to spaces, ``strip()``, :func:`process_punctuation`,
    :func:`process_digit_article`. E.g. ``"Two dogs."`` -> ``"2 dogs"``, ``"1,000"`` -> ``"1000"``,
    ``"A dog"`` -> ``"dog"``, ``"dont"`` -> ``"don't"``.
    """
    return process_digit_article(process_punctuation(_clean(ans)))


def postprocess_vqa_generation(text: str) -> str:
    """Cut a generated continuation down to the answer, as OpenFlamingo/LIVE/Lever-LM do.

    ``open_flamingo/eval/vqa_metric.py``: keep what precedes the first ``Question``, ``Answer``
    or ``Short`` (the model starting the next demonstration), then what precedes the first
    ``", "``; LIVE then drops newlines and strips (specs/live.md §5).
    """
    answer = re.split("Question|Answer|Short", text, maxsplit=1)[0]
    answer = re.split(", ", answer, maxsplit=1)[0]
    return answer.replace("\n", "").strip()


# --------------------------------------------------------------------------------------------
# scoring


def _qid(value: Any, where: str) -> int:
    """Question ids are ints; JSON object keys arrive as digit strings, accept those too."""
    if type(value) is int:  # the common case, first
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise MalformedFileError(f"{where}: question_id {value!r} is not an integer", fix=_RESULTS_FIX)


def _is_mapping(obj: Any) -> bool:
    return type(obj) is dict or isinstance(obj, Mapping)  # skip the slow ABC check for JSON dicts


def _prediction_map(predictions: Mapping[Any, str] | Sequence[Mapping[str, Any]]) -> dict[int, str]:
    if _is_mapping(predictions):
        items: Iterable[tuple[Any, Any]] = predictions.items()  # type: ignore[union-attr]
    elif isinstance(predictions, Sequence) and not isinstance(predictions, (str, bytes)):
        try:
            items = [(row["question_id"], row["answer"]) for row in predictions]  # type: ignore[index]
        except (KeyError, TypeError, IndexError):
            bad = next(i for i, row in enumerate(predictions)
                       if not _is_mapping(row) or "question_id" not in row or "answer" not in row)
            raise MalformedFileError(
                f"results entry {bad} is not an object with 'question_id' and 'answer': {predictions[bad]!r:.80}",
                fix=_RESULTS_FIX,
            ) from None
    else:
        raise MalformedFileError(
            f"results must be a list of objects or a {{question_id: answer}} mapping, got {type(predictions).__name__}",
            fix=_RESULTS_FIX,
        )
    out: dict[int, str] = {}
    for raw_qid, answer in items:
        qid = _qid(raw_qid, "results")
        if type(answer) is not str:
            raise MalformedFileError(f"results: answer for question {qid} is not a string: {answer!r:.80}", fix=_RESULTS_FIX)
        if qid in out and out[qid] != answer:
            # vqaEval's loadRes silently keeps the last one; two different answers for one
            # question are a bug upstream (e.g. a bad multi-GPU gather), so say so.
            raise VlreproError(
                f"results hold two different answers for question {qid}: {out[qid]!r} and {answer!r}",
                fix="deduplicate the results file (one answer per question_id)",
            )
        out[qid] = answer
    return out


def _ids_preview(ids: Iterable[int], k: int = 5) -> str:
    ids = list(ids)
    shown = ", ".join(str(i) for i in ids[:k])
    return f"{shown}{', …' if len(ids) > k else ''} ({len(ids)} in all)"


_ANN_FIX = 'use the official VQA annotations file ({"annotations": [...]})'


def _select(
    annotations: Sequence[Mapping[str, Any]],
    predictions: Mapping[Any, str] | Sequence[Mapping[str, Any]],
    questions: Sequence[Mapping[str, Any]] | None,
    mode: str,
    subset: bool,
) -> tuple[list[tuple[int, Mapping[str, Any], str]], int]:
    """Validate the inputs; return ``(qid, annotation, prediction)`` to score, in annotation order."""
    if mode not in MODES:
        raise VlreproError(f"unknown VQA mode {mode!r}", fix=f"use one of {', '.join(MODES)}")
    preds = _prediction_map(predictions)
    if not preds:
        raise VlreproError("results are empty: nothing to score", fix=_RESULTS_FIX)
    by_id: dict[int, Mapping[str, Any]] = {}
    for i, ann in enumerate(annotations):
        try:
            qid = _qid(ann["question_id"], "annotations")
        except (KeyError, TypeError, IndexError):
            raise MalformedFileError(f"annotation {i} is not an object with a 'question_id'", fix=_ANN_FIX) from None
        if qid in by_id:
            raise MalformedFileError(f"annotations hold question {qid} twice", fix=_ANN_FIX)
        by_id[qid] = ann
    if not by_id:
        raise VlreproError("annotations are empty: nothing to score against", fix=_ANN_FIX)
    if questions is not None:
        qids = {_qid(q.get("question_id") if _is_mapping(q) else None, "questions") for q in questions}
        if qids != by_id.keys():
            raise VlreproError(
                f"questions and annotations do not describe the same question ids "
                f"({len(qids)} questions vs {len(by_id)} annotations)",
                fix="pass the questions and annotations files of the same split",
            )
    unknown = [q for q in preds if q not in by_id]
    if unknown:
        raise VlreproError(
            f"results hold question ids that are not in the annotations: {_ids_preview(unknown)}",
            fix="score against the annotations of the split the predictions were made on",
        )
    if not subset and len(preds) != len(by_id):
        missing = [q for q in by_id if q not in preds]
        raise VlreproError(
            f"results have no answer for {len(missing)} of {len(by_id)} annotated questions: {_ids_preview(missing)}",
            fix="predict every question, or pass --subset (subset=True) to score only the predicted ones",
        )
    selected = [(qid, ann, preds[qid]) for qid, ann in by_id.items() if qid in preds]
    return selected, len(by_id)


@cache
def _one_match(n: int) -> float:
    """LOO mean for n answers of which exactly one matches: that annotator scores 0, the others
    1/3 each, accumulated left to right (adding 0.0 does not change a float sum)."""
    total = 0.0
    for _ in range(n - 1):
        total += 1 / 3
    return total / n


def _leave_one_out(gts: Sequence[Any], pred: str) -> float:
    """Mean over i of ``min(1, matches among the others / 3)``, index-based, summed in index
    order like ``float(sum(gtAcc))/len(gtAcc)`` so that the float result is identical."""
    c = gts.count(pred)
    if c == 0:
        return 0.0
    if c >= 4:  # every annotator sees >= 3 matches among the others: n * 1.0 / n
        return 1.0
    if c == 1:
        return _one_match(len(gts))
    total = 0.0  # c in (2, 3): two different terms, summed in their real order
    for g in gts:
        total += min(1.0, (c - 1 if g == pred else c) / 3)
    return total / len(gts)


def _leave_one_out_dict(answers: Sequence[Mapping[str, Any]], gts: Sequence[str], pred: str) -> float:
    """OpenFlamingo/vqaEval's ``[item for item in answers if item != gtAnsDatum]``, literally.

    Equal to :func:`_leave_one_out` whenever the answer dicts are pairwise distinct.
    """
    dicts = [{**a, "answer": g} for a, g in zip(answers, gts, strict=False)]
    total = 0.0
    for d in dicts:
        matches = sum(1 for other, g in zip(dicts, gts, strict=False) if other != d and g == pred)
        total += min(1.0, matches / 3)
    return total / len(dicts)


def _unique_answer_ids(answers: Sequence[Mapping[str, Any]]) -> bool:
    """True when every answer dict carries a distinct ``answer_id`` (VQAv2, OK-VQA): then the
    dicts are pairwise distinct whatever their normalised answers, and LOO is index-based."""
    ids = [a.get("answer_id") for a in answers]
    return None not in ids and len(set(ids)) == len(ids)


@lru_cache(maxsize=1 << 18)
def _official_gts(raw: tuple[str, ...]) -> tuple[str, ...]:
    """The ground truth as the official script compares it: processPunctuation only, and only
    if the answers are not all identical. Cached per answer tuple (10 x "yes" is common)."""
    if len(set(raw)) > 1:
        return tuple(process_punctuation(a) for a in raw)
    return raw


@lru_cache(maxsize=1 << 18)
def _flamingo_gts(raw: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(normalize_answer(a) for a in raw)


def _score_one(ann: Mapping[str, Any], pred_raw: str, mode: str) -> float:
    answers = ann["answers"]
    raw = tuple([a["answer"] for a in answers])
    if not raw:
        raise ValueError("no answers")
    pred = normalize_answer(pred_raw)
    if mode == "official":
        # Official dict inequality only differs from index-based LOO for duplicate answer
        # dicts, which official annotation files never hold (unique answer_id).
        return _leave_one_out(_official_gts(raw), pred)
    gts = _flamingo_gts(raw)
    if _unique_answer_ids(answers):
        return _leave_one_out(gts, pred)
    return _leave_one_out_dict(answers, gts, pred)


def _scored(selected: list[tuple[int, Mapping[str, Any], str]], mode: str) -> Iterable[tuple[int, float, Any, Any]]:
    """``(qid, accuracy, question_type, answer_type)`` per selected question."""
    flamingo = mode == "openflamingo"
    for qid, ann, pred in selected:
        try:
            acc = _score_one(ann, pred, mode)
            qtype = ann["question_type"]
            # vqa_metric.py: ``... if "answer_type" in gts[quesId] else "other"``
            atype = ann.get("answer_type", "other") if flamingo else ann["answer_type"]
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            what = f"no {e.args[0]!r}" if isinstance(e, KeyError) else "answers that are not a list of {answer: str} objects"
            raise MalformedFileError(f"annotation of question {qid} has {what}", fix=_ANN_FIX) from None
        yield qid, acc, qtype, atype


def vqa_per_question_accuracy(
    annotations: Sequence[Mapping[str, Any]],
    predictions: Mapping[Any, str] | Sequence[Mapping[str, Any]],
    questions: Sequence[Mapping[str, Any]] | None = None,
    *,
    mode: str = "official",
    subset: bool = False,
) -> dict[int, float]:
    """Per-question accuracy in [0, 1] (``avgGTAcc`` of the official script), keyed by question id.

    Same inputs, checks and rules as :func:`vqa_accuracy`.
    """
    with gc_paused():
        selected, _ = _select(annotations, predictions, questions, mode, subset)
        return {qid: acc for qid, acc, _, _ in _scored(selected, mode)}


def vqa_accuracy(
    annotations: Sequence[Mapping[str, Any]],
    predictions: Mapping[Any, str] | Sequence[Mapping[str, Any]],
    questions: Sequence[Mapping[str, Any]] | None = None,
    *,
    mode: str = "official",
    subset: bool = False,
) -> dict[str, Any]:
    """VQA accuracy exactly as ``VQAEval.evaluate`` reports it.

    Args:
        annotations: the ``"annotations"`` list of an official VQAv2/OK-VQA annotation file
            (``question_id``, ``question_type``, ``answer_type``, ``answers`` = n x ``{answer,
            answer_confidence, answer_id}``, ``multiple_choice_answer``).
        predictions: ``{question_id: answer}`` or the official results list
            ``[{"question_id": int, "answer": str}, ...]``.
        questions: optionally the ``"questions"`` list of the matching questions file; only used
            to check that it describes the same question ids as ``annotations``.
        mode: ``"official"`` (GT-Vision-Lab vqaEval.py) or ``"openflamingo"`` (vqa_metric.py);
            see the module docstring for the differences.
        subset: score only the predicted questions. Without it every annotated question must
            have a prediction (the official ``loadRes`` assertion). Ids unknown to the
            annotations are an error either way.

    Returns:
        ``{"overall": float, "perQuestionType": {type: float}, "perAnswerType": {type: float}}``,
        percentages rounded to 2 decimals, types in order of first appearance.

    Raises:
        VlreproError: empty or malformed predictions, unknown or (without ``subset``) missing
            question ids, a questions file that does not match the annotations.
    """
    acc_qa: list[float] = []
    acc_qtype: dict[Any, list[float]] = {}
    acc_atype: dict[Any, list[float]] = {}
    with gc_paused():
        selected, _ = _select(annotations, predictions, questions, mode, subset)
        for _, acc, qtype, atype in _scored(selected, mode):
            acc_qa.append(acc)
            acc_qtype.setdefault(qtype, []).append(acc)
            acc_atype.setdefault(atype, []).append(acc)

    # setAccuracy: round(100*float(sum(acc))/len(acc), n) with n=2, the same float operations.
    def pct(values: list[float]) -> float:
        return round(100 * float(sum(values)) / len(values), 2)

    return {
        "overall": pct(acc_qa),
        "perQuestionType": {k: pct(v) for k, v in acc_qtype.items()},
        "perAnswerType": {k: pct(v) for k, v in acc_atype.items()},
    }


# --------------------------------------------------------------------------------------------
# files and command line


def load_vqa_files(
    annotations_path: str,
    results_path: str,
    questions_path: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Read the official annotation, results and (optional) question files, checking their shape."""
    with gc_paused():  # json.load of a 170 MB annotations file: see gc_paused
        return _load_vqa_files(annotations_path, results_path, questions_path)


def _load_vqa_files(
    annotations_path: str,
    results_path: str,
    questions_path: str | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]] | None]:
    fix_data = "download the official VQA files (visualqa.org/download.html, okvqa.allenai.org) or run `vlrepro data check`"
    ann_doc = read_json(annotations_path, what="VQA annotations file", fix=fix_data)
    if not isinstance(ann_doc, dict) or not isinstance(ann_doc.get("annotations"), list):
        raise MalformedFileError(f'VQA annotations file has no "annotations" list: {annotations_path}', fix=fix_data)
    questions = None
    if questions_path is not None:
        q_doc = read_json(questions_path, what="VQA questions file", fix=fix_data)
        if not isinstance(q_doc, dict) or not isinstance(q_doc.get("questions"), list):
            raise MalformedFileError(f'VQA questions file has no "questions" list: {questions_path}', fix=fix_data)
        questions = q_doc["questions"]
    results = read_json(results_path, what="VQA results file", fix=_RESULTS_FIX)
    if not isinstance(results, list):
        raise MalformedFileError(f"VQA results file is not a JSON list: {results_path}", fix=_RESULTS_FIX)
    return ann_doc["annotations"], results, questions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vlrepro eval vqa``."""
    parser.add_argument("--questions", help="official questions file ({\"questions\": [...]}); optional, only cross-checked")
    parser.add_argument("--annotations", required=True, help="official annotations file ({\"annotations\": [...]})")
    parser.add_argument("--results", required=True, help='results file: [{"question_id": int, "answer": str}, ...]')
    parser.add_argument("--mode", choices=MODES, default="official",
                        help="official = GT-Vision-Lab vqaEval.py (default); openflamingo = OpenFlamingo/LIVE/Lever-LM vqa_metric.py")
    parser.add_argument("--subset", action="store_true", help="score only the predicted question ids")
    parser.add_argument("--out", help="also write the JSON object to this file (atomically)")


def main(args: argparse.Namespace) -> int:
    """Print ``{"overall", "perQuestionType", "perAnswerType"}`` as one JSON object."""
    annotations, results, questions = load_vqa_files(args.annotations, args.results, args.questions)
    scores = vqa_accuracy(annotations, results, questions, mode=args.mode, subset=args.subset)
    return emit_result(scores, args.out)
