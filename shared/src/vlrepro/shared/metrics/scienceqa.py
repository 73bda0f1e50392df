"""ScienceQA accuracy by subject, context and grade (lupantech/ScienceQA ``get_scores``).

The official scorer (copied by LaVIN, MemVP and ADEM-VL as ``eval_sqa.py``) builds a pandas
frame of the test problems and reports, as ``"{:.2f}"`` percentages:

* ``acc_average``: correct / number of results;
* ``acc_natural`` / ``acc_social`` / ``acc_language``: by ``subject`` (``natural science``,
  ``social science``, ``language science``; the paper's NAT/SOC/LAN);
* ``acc_has_text`` (TXT): the ``hint`` is non-empty; ``acc_has_image`` (IMG): ``image`` is set;
  ``acc_no_context`` (NO): neither; TXT and IMG overlap;
* ``acc_grade_1_6`` / ``acc_grade_7_12``: ``grade`` in ``grade1..grade6`` / ``grade7..grade12``.

:func:`scienceqa_accuracy` computes the same from the problem metadata, as floats rounded to two
decimals (``round`` and ``"{:.2f}"`` round a double identically), with ``None`` for a group that
is empty in a subset. The key ``acc_average`` is named ``acc_avg`` here.

Parsing generated text (:func:`parse_answer`) follows LLaVA's ``eval_science_qa.py``, minus its
non-determinism (the original ScienceQA ``get_pred_idx`` falls back to ``random.choice``): an
output that names no valid option is ``-1`` (wrong) and counted in ``unparsed``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import MalformedFileError, VlreproError, read_json, read_jsonl
from . import emit_result

__all__ = ["parse_answer", "scienceqa_accuracy", "load_predictions", "add_arguments", "main"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SUBJECTS = {"acc_natural": "natural science", "acc_social": "social science", "acc_language": "language science"}
GRADES_1_6 = frozenset(f"grade{i}" for i in range(1, 7))
GRADES_7_12 = frozenset(f"grade{i}" for i in range(7, 13))
KEYS = (
    "acc_avg", "acc_natural", "acc_social", "acc_language", "acc_has_text", "acc_has_image",
    "acc_no_context", "acc_grade_1_6", "acc_grade_7_12",
)

# "A. text" / "(A) text" / "A) text" / "A: text" / "A" at the start of the output.
_LEADING = re.compile(r"^\(?([A-Z])(?:[.):](?:\s|$)|\)|$)")
# LLaVA's r'The answer is ([A-Z]).', relaxed: the trailing character may be missing (end of
# output), and "(B)" is accepted as "B".
_ANSWER_IS = re.compile(r"[Tt]he answer is:?\s*\(?([A-Z])(?![A-Za-z])")

_RESULTS_FIX = (
    'give {pid: prediction} JSON (an option index or the generated text), ScienceQA\'s {"results": {pid: index}}, '
    'or JSON Lines rows {"question_id"|"pid": ..., "text"|"pred": ...} (LLaVA answers file)'
)


def parse_answer(text: str | int, options: Sequence[str]) -> int:
    """The option index named by a model output, or ``-1``.

    Rules, in LLaVA's order (deterministic):

    1. the stripped output is one capital letter (``"B"``);
    2. it starts with an option letter as ``"B."``, ``"B)"``, ``"(B)"`` or ``"B:"`` followed by a
       space or the end (LLaVA: ``pred[0] in options and pred[1:3] == ". "``);
    3. it says ``"The answer is B"`` (also ``"(B)"``); several such phrases must agree.

    A letter beyond the number of ``options`` (the choices) gives ``-1``, as LLaVA's
    ``get_pred_idx`` does; an ``int`` is taken as an index (``-1`` if out of range).
    """
    n = len(options)
    if isinstance(text, bool):
        return -1
    if isinstance(text, int):
        return text if 0 <= text < n else -1
    if not isinstance(text, str):
        return -1
    s = text.strip()
    letter = None
    m = _LEADING.match(s)
    if m:
        letter = m.group(1)
    else:
        found = set(_ANSWER_IS.findall(s))
        if len(found) == 1:
            letter = found.pop()
    if letter is None:
        return -1
    idx = LETTERS.index(letter)
    return idx if idx < n else -1


def _pct(correct: int, total: int) -> float | None:
    # get_acc_with_contion: "{:.2f}".format(len(correct_pd) / len(total_pd) * 100)
    return round(correct / total * 100, 2) if total else None


def scienceqa_accuracy(
    problems: Mapping[str, Mapping[str, Any]],
    predictions: Mapping[str, int | str],
    *,
    subset: bool = False,
) -> dict[str, Any]:
    """ScienceQA accuracy overall and by NAT/SOC/LAN, TXT/IMG/NO and grade.

    Args:
        problems: ``{pid: problem}`` from ``problems.json`` for the split being scored (each
            problem with ``choices``, ``answer`` (int), ``hint``, ``image``, ``subject``, ``grade``).
        predictions: ``{pid: option index or generated text}``; text goes through
            :func:`parse_answer`.
        subset: score only the predicted problems; otherwise every problem needs a prediction
            (the official scripts ``assert num == 4241``). Unknown pids are an error either way.

    Returns:
        ``acc_avg, acc_natural, acc_social, acc_language, acc_has_text, acc_has_image,
        acc_no_context, acc_grade_1_6, acc_grade_7_12`` (percent, 2 decimals, ``None`` for an
        empty group), ``n`` (problems scored), ``correct`` and ``unparsed`` (outputs that named
        no valid option).
    """
    preds = {str(k): v for k, v in predictions.items()}
    if not preds:
        raise VlreproError("ScienceQA results are empty: nothing to score", fix=_RESULTS_FIX)
    probs = {str(k): v for k, v in problems.items()}
    unknown = [pid for pid in preds if pid not in probs]
    if unknown:
        raise VlreproError(
            f"results hold {len(unknown)} problem ids that are not in the scored split: {', '.join(unknown[:5])}",
            fix="check --split / --pid-splits against the split the predictions were made on",
        )
    if not subset:
        missing = [pid for pid in probs if pid not in preds]
        if missing:
            raise VlreproError(
                f"results have no prediction for {len(missing)} of {len(probs)} problems: {', '.join(missing[:5])}",
                fix="predict every problem of the split, or pass --subset (subset=True)",
            )
    groups = {key: [0, 0] for key in KEYS}  # key -> [correct, total]
    unparsed = 0
    for pid, prob in probs.items():
        if pid not in preds:
            continue
        try:
            choices, label = prob["choices"], prob["answer"]
            subject, grade = prob["subject"], prob["grade"]
        except (KeyError, TypeError):
            raise MalformedFileError(f"ScienceQA problem {pid} lacks choices/answer/subject/grade") from None
        if (isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence) or not isinstance(grade, str)
                or isinstance(label, bool) or not isinstance(label, int)):
            raise MalformedFileError(
                f"ScienceQA problem {pid}: choices must be a list, answer an option index and grade a string like 'grade3'"
            )
        idx = parse_answer(preds[pid], choices)
        unparsed += idx == -1
        ok = int(idx == label)
        has_text = bool(prob.get("hint"))
        has_image = bool(prob.get("image"))
        member = {
            "acc_avg": True,
            "acc_natural": subject == SUBJECTS["acc_natural"],
            "acc_social": subject == SUBJECTS["acc_social"],
            "acc_language": subject == SUBJECTS["acc_language"],
            "acc_has_text": has_text,
            "acc_has_image": has_image,
            "acc_no_context": not has_text and not has_image,
            "acc_grade_1_6": grade in GRADES_1_6,
            "acc_grade_7_12": grade in GRADES_7_12,
        }
        for key, inside in member.items():
            if inside:
                groups[key][0] += ok
                groups[key][1] += 1
    out: dict[str, Any] = {key: _pct(c, t) for key, (c, t) in groups.items()}
    out.update(n=groups["acc_avg"][1], correct=groups["acc_avg"][0], unparsed=unparsed)
    return out


# --------------------------------------------------------------------------------------------
# files and command line


def load_predictions(path: str) -> dict[str, int | str]:
    """Read ScienceQA predictions in any of the accepted formats (see ``--results``)."""
    try:
        doc: Any = read_json(path, what="ScienceQA results file", fix=_RESULTS_FIX)
    except MalformedFileError:
        try:
            doc = read_jsonl(path, what="ScienceQA results file", fix=_RESULTS_FIX)  # LLaVA writes .jsonl
        except UnicodeDecodeError as e:
            raise MalformedFileError(f"ScienceQA results file is not UTF-8 text: {path} ({e})", fix=_RESULTS_FIX) from None
    if isinstance(doc, dict) and ("question_id" in doc or "pid" in doc):
        doc = [doc]  # a one-line LLaVA answers file parses as a single JSON object
    if isinstance(doc, dict):
        if isinstance(doc.get("results"), dict):  # ScienceQA / LaVIN result file
            doc = doc["results"]
        out: dict[str, int | str] = {}
        for pid, value in doc.items():
            if isinstance(value, dict):
                value = _row_prediction(value, path)
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise MalformedFileError(f"prediction for problem {pid} is neither an index nor text: {path}", fix=_RESULTS_FIX)
            out[str(pid)] = value
        return out
    if isinstance(doc, list):
        out = {}
        for i, row in enumerate(doc):
            if not isinstance(row, dict):
                raise MalformedFileError(f"ScienceQA result {i} is not an object: {path}", fix=_RESULTS_FIX)
            pid = row.get("question_id", row.get("pid"))
            if pid is None:
                raise MalformedFileError(f"ScienceQA result {i} has no question_id/pid: {path}", fix=_RESULTS_FIX)
            if str(pid) in out:
                raise VlreproError(f"ScienceQA results hold problem {pid} twice: {path}", fix="one prediction per problem")
            out[str(pid)] = _row_prediction(row, path)
        return out
    raise MalformedFileError(f"ScienceQA results file is neither an object nor a list: {path}", fix=_RESULTS_FIX)


def _row_prediction(row: Mapping[str, Any], path: str) -> int | str:
    for key in ("text", "pred", "prediction", "answer"):
        if key in row:
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                break
            return value
    raise MalformedFileError(f"ScienceQA result row has no text/pred field: {path}", fix=_RESULTS_FIX)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vlrepro eval scienceqa``."""
    parser.add_argument("--problems", required=True, help="ScienceQA data/scienceqa/problems.json ({pid: problem})")
    parser.add_argument("--results", required=True, help=_RESULTS_FIX)
    parser.add_argument("--split", default="test", help="split to score (default test; minival etc. need --pid-splits)")
    parser.add_argument("--pid-splits", help="pid_splits.json; without it the split comes from each problem's 'split' field")
    parser.add_argument("--subset", action="store_true", help="score only the predicted problems of the split")
    parser.add_argument("--out", help="also write the JSON object to this file (atomically)")


def main(args: argparse.Namespace) -> int:
    """Print the ScienceQA accuracies as one JSON object."""
    fix_data = "get data/scienceqa/problems.json and pid_splits.json from github.com/lupantech/ScienceQA"
    problems = read_json(args.problems, what="ScienceQA problems file", fix=fix_data)
    if not isinstance(problems, dict) or not all(isinstance(p, dict) for p in problems.values()):
        raise MalformedFileError(f"ScienceQA problems file is not a {{pid: problem}} object: {args.problems}", fix=fix_data)
    if args.pid_splits:
        splits = read_json(args.pid_splits, what="ScienceQA pid_splits file", fix=fix_data)
        if not isinstance(splits, dict) or not isinstance(splits.get(args.split), list):
            raise VlreproError(f"split {args.split!r} is not in {args.pid_splits}", fix="use one of its keys, e.g. test, val, minival")
        absent = [str(p) for p in splits[args.split] if str(p) not in problems]
        if absent:
            raise MalformedFileError(f"{len(absent)} pids of split {args.split!r} are not in {args.problems}", fix=fix_data)
        scored = {str(p): problems[str(p)] for p in splits[args.split]}
    else:
        scored = {pid: p for pid, p in problems.items() if p.get("split") == args.split}
        if not scored:
            raise VlreproError(f"no problem in {args.problems} has split {args.split!r}", fix="pass --pid-splits pid_splits.json for splits such as minival")
    predictions = load_predictions(args.results)
    scores = scienceqa_accuracy(scored, predictions, subset=args.subset)
    return emit_result(scores, args.out)
