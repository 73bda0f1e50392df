"""ScienceQA accuracy: the answer parser, the NAT/SOC/LAN, TXT/IMG/NO and grade breakdown, the
prediction file formats and ``vlrepro eval scienceqa``.

The expected numbers are worked out by hand in the comments from the nine-problem fixture
below (official ``get_scores``: percent of correct answers in each group, ``"{:.2f}"``)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from vlrepro.shared.cli import main as cli_main
from vlrepro.shared.errors import MalformedFileError, VlreproError
from vlrepro.shared.metrics.scienceqa import load_predictions, parse_answer, scienceqa_accuracy

NAT, SOC, LAN = "natural science", "social science", "language science"


def prob(subject: str, grade: str, choices: list[str], answer: int, *, hint: str = "", image: str | None = None,
         split: str = "test") -> dict:
    return {"question": "q?", "choices": choices, "answer": answer, "hint": hint, "image": image, "task": "closed choice",
            "grade": grade, "subject": subject, "topic": "t", "category": "c", "skill": "s", "lecture": "", "solution": "",
            "split": split}


# pid: subject, grade, context (hint -> TXT, image -> IMG, neither -> NO), prediction -> parsed index, correct?
PROBLEMS = {
    "1": prob(NAT, "grade2", ["red", "blue", "green"], 0, image="image.png"),       # "A"                -> 0  right
    "2": prob(NAT, "grade8", ["yes", "no"], 1, hint="It rains."),                    # "(B)"              -> 1  right
    "3": prob(NAT, "grade5", ["a", "b", "c", "d"], 2, hint="h", image="image.png"),  # "The answer is C." -> 2  right
    "4": prob(SOC, "grade7", ["north", "south"], 0),                                 # "north" (text)     -> -1 unparsed
    "5": prob(SOC, "grade3", ["x", "y", "z"], 1, image="image.png"),                 # "I don't know"     -> -1 unparsed
    "6": prob(SOC, "grade10", ["x", "y"], 1, hint="h"),                              # 1 (an index)       -> 1  right
    "7": prob(LAN, "grade4", ["x", "y", "z"], 2),                                    # "D" (3 choices)    -> -1 unparsed
    "8": prob(LAN, "grade12", ["yes", "no"], 0, hint="h"),                           # "A. yes"           -> 0  right
    "9": prob(SOC, "grade9", ["x", "y"], 0, image="image.png"),                      # "The answer is B." -> 1  wrong
}
PREDICTIONS = {"1": "A", "2": "(B)", "3": "The answer is C.", "4": "north", "5": "I don't know", "6": 1, "7": "D",
               "8": "A. yes", "9": "The answer is B."}
EXPECTED = {
    "acc_avg": 55.56,         # right: 1 2 3 6 8 -> 5/9 = 55.555...
    "acc_natural": 100.0,     # 1 2 3 -> 3/3
    "acc_social": 25.0,       # 4 5 6 9 -> 1/4
    "acc_language": 50.0,     # 7 8 -> 1/2
    "acc_has_text": 100.0,    # hint: 2 3 6 8 -> 4/4
    "acc_has_image": 50.0,    # image: 1 3 5 9 -> 2/4 (3 has both and counts in TXT and IMG)
    "acc_no_context": 0.0,    # neither: 4 7 -> 0/2
    "acc_grade_1_6": 50.0,    # grades 2 5 3 4: 1 3 5 7 -> 2/4
    "acc_grade_7_12": 60.0,   # grades 8 7 10 12 9: 2 4 6 8 9 -> 3/5
    "n": 9,
    "correct": 5,
    "unparsed": 3,            # 4 5 7; 9 parsed (B) and is merely wrong
}


# ---------------------------------------------------------------------------------------- parser

@pytest.mark.parametrize(
    "text, n, expected",
    [
        ("A", 3, 0),
        (" B \n", 3, 1),                        # surrounding whitespace is stripped
        ("(B)", 3, 1),
        ("B.", 3, 1),
        ("B. blue", 3, 1),                      # LLaVA: pred[0] in options and pred[1:3] == ". "
        ("B) blue", 3, 1),
        ("B: blue", 3, 1),
        ("The answer is C.", 3, 2),             # LLaVA's r"The answer is ([A-Z])."
        ("The answer is (C).", 3, 2),
        ("the answer is C", 3, 2),              # lower-case "the", no trailing character
        ("Because ... The answer is C.", 3, 2),
        ("The answer is C. So the answer is C.", 3, 2),   # several phrases that agree
        ("The answer is A. No, the answer is B.", 3, -1),  # ... that disagree
        ("The answer is Blue.", 3, -1),          # "B" starts a word: not a letter answer
        ("A. The answer is B.", 3, 0),           # the leading letter wins, as in LLaVA
        ("D", 3, -1),                            # a letter beyond the choices
        ("C", 3, 2),
        ("blue", 3, -1),                         # option text is not parsed (LLaVA: FAILED)
        ("A cat", 3, -1),                        # "A" as an article
        ("I think B", 3, -1),
        ("a", 3, -1),                            # lower-case letters are not option letters
        ("", 3, -1),
        ("garbage !!", 3, -1),
        (2, 3, 2),                               # an index (ADEM-VL preds.json)
        (3, 3, -1),
        (-1, 3, -1),
        (True, 3, -1),                           # a bool is not an index
        (None, 3, -1),
    ],
)
def test_parse_answer(text, n: int, expected: int) -> None:
    assert parse_answer(text, [f"opt{i}" for i in range(n)]) == expected


# ---------------------------------------------------------------------------------------- scoring

def test_breakdown_by_subject_context_and_grade() -> None:
    assert scienceqa_accuracy(PROBLEMS, PREDICTIONS) == EXPECTED


def test_pids_may_be_ints_and_inputs_are_not_mutated() -> None:
    probs = json.loads(json.dumps(PROBLEMS))
    preds = {int(k): v for k, v in PREDICTIONS.items()}
    assert scienceqa_accuracy(probs, preds) == EXPECTED
    assert probs == PROBLEMS and preds == {int(k): v for k, v in PREDICTIONS.items()}


def test_bool_image_flag_and_whitespace_hint() -> None:
    # ADEM-VL passes image=True/False; the official test is truthiness, so a hint of one space is text.
    probs = {"1": prob(NAT, "grade1", ["a", "b"], 0, image=True), "2": prob(NAT, "grade1", ["a", "b"], 0, hint=" ")}
    probs["2"]["image"] = False
    out = scienceqa_accuracy(probs, {"1": 0, "2": 1})
    assert (out["acc_has_image"], out["acc_has_text"], out["acc_no_context"]) == (100.0, 0.0, None)


def test_subset_scores_only_predicted_and_empty_groups_are_none() -> None:
    out = scienceqa_accuracy(PROBLEMS, {"1": "A", "4": "B"}, subset=True)
    assert out == {
        "acc_avg": 50.0, "acc_natural": 100.0, "acc_social": 0.0, "acc_language": None,
        "acc_has_text": None, "acc_has_image": 100.0, "acc_no_context": 0.0,
        "acc_grade_1_6": 100.0, "acc_grade_7_12": 0.0, "n": 2, "correct": 1, "unparsed": 0,
    }


def test_ungraded_problem_counts_only_in_the_average() -> None:
    probs = {"1": prob(NAT, "grade1", ["a", "b"], 0), "2": prob(NAT, "kindergarten", ["a", "b"], 0)}
    out = scienceqa_accuracy(probs, {"1": "B", "2": "A"})
    assert (out["acc_avg"], out["acc_grade_1_6"], out["acc_grade_7_12"]) == (50.0, 0.0, None)


def test_two_decimal_rounding_matches_the_official_format() -> None:
    # get_acc_with_contion formats "{:.2f}"; round(x, 2) rounds the same double identically.
    probs = {str(i): prob(NAT, "grade1", ["a", "b"], 0) for i in range(7)}
    out = scienceqa_accuracy(probs, {str(i): ("A" if i < 2 else "B") for i in range(7)})
    assert out["acc_avg"] == 28.57  # 2/7 = 28.5714...
    for total in range(1, 120):
        for right in range(total + 1):
            x = right / total * 100
            assert round(x, 2) == float(f"{x:.2f}")


def test_missing_unknown_and_empty_predictions() -> None:
    with pytest.raises(VlreproError, match="no prediction for 1 of 9"):
        scienceqa_accuracy(PROBLEMS, {k: v for k, v in PREDICTIONS.items() if k != "9"})
    with pytest.raises(VlreproError, match="not in the scored split: 99"):
        scienceqa_accuracy(PROBLEMS, {**PREDICTIONS, "99": "A"})
    with pytest.raises(VlreproError, match="not in the scored split"):
        scienceqa_accuracy(PROBLEMS, {"99": "A"}, subset=True)
    with pytest.raises(VlreproError, match="empty"):
        scienceqa_accuracy(PROBLEMS, {})


@pytest.mark.parametrize("field, value", [("answer", None), ("answer", "0"), ("choices", "ab"), ("grade", 3)])
def test_malformed_problem_is_a_clear_error(field: str, value) -> None:
    probs = {"1": prob(NAT, "grade1", ["a", "b"], 0)}
    probs["1"][field] = value
    with pytest.raises(MalformedFileError, match="problem 1"):
        scienceqa_accuracy(probs, {"1": "A"})
    del probs["1"][field]
    with pytest.raises(MalformedFileError, match="lacks"):
        scienceqa_accuracy(probs, {"1": "A"})


def test_matches_a_pandas_restatement_of_get_scores() -> None:
    pd = pytest.importorskip("pandas")
    rng = random.Random(0)
    subjects, grades = [NAT, SOC, LAN], [f"grade{i}" for i in range(1, 13)]
    problems, preds = {}, {}
    for i in range(150):
        n = rng.randint(2, 5)
        problems[str(i)] = prob(rng.choice(subjects), rng.choice(grades), [f"c{j}" for j in range(n)], rng.randrange(n),
                                hint=rng.choice(["", "a hint"]), image=rng.choice([None, "image.png"]),
                                split=rng.choice(["test", "val"]))
    test_pids = [p for p, v in problems.items() if v["split"] == "test"]
    for p in test_pids:
        preds[p] = rng.randrange(-1, len(problems[p]["choices"]))
    # The official frame: one row per problem, the test split, context flags by truthiness.
    frame = pd.DataFrame(problems).T
    frame = frame[frame["split"] == "test"].copy()
    frame["true_false"] = [preds[p] == a for p, a in zip(frame.index, frame["answer"], strict=True)]
    frame["has_text"] = [bool(h) for h in frame["hint"]]
    frame["has_image"] = [bool(m) for m in frame["image"]]
    frame["no_context"] = ~frame["has_text"] & ~frame["has_image"]

    def acc(mask) -> float:
        part = frame[mask]
        return float("{:.2f}".format(len(part[part["true_false"]]) / len(part) * 100))

    expected = {
        "acc_avg": float("{:.2f}".format(frame["true_false"].sum() / len(preds) * 100)),
        "acc_natural": acc(frame["subject"] == NAT), "acc_social": acc(frame["subject"] == SOC),
        "acc_language": acc(frame["subject"] == LAN), "acc_has_text": acc(frame["has_text"]),
        "acc_has_image": acc(frame["has_image"]), "acc_no_context": acc(frame["no_context"]),
        "acc_grade_1_6": acc(frame["grade"].isin(grades[:6])), "acc_grade_7_12": acc(frame["grade"].isin(grades[6:])),
    }
    test_problems = {p: problems[p] for p in test_pids}
    out = scienceqa_accuracy(test_problems, preds)
    assert {k: out[k] for k in expected} == expected
    assert out["unparsed"] == sum(v == -1 for v in preds.values())


# ---------------------------------------------------------------------------------------- files

def write(path: Path, obj) -> str:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"1": 0, "2": "The answer is B."}, {"1": 0, "2": "The answer is B."}),                  # ADEM-VL preds.json
        ({"results": {"1": 0, "2": 1}, "acc": 50.0}, {"1": 0, "2": 1}),                        # ScienceQA / LaVIN
        ({"1": {"text": "A"}, "2": {"pred": 1}}, {"1": "A", "2": 1}),
        ([{"question_id": 1, "text": "A"}, {"pid": "2", "pred": "B"}], {"1": "A", "2": "B"}),  # JSON list of rows
        ('{"question_id": 1, "prompt": "p", "text": "A"}\n\n{"question_id": 2, "text": "(B)"}\n',
         {"1": "A", "2": "(B)"}),                                                               # LLaVA answers .jsonl
        ('{"question_id": 7, "prompt": "p", "text": "C"}\n', {"7": "C"}),                     # ... with one line
    ],
)
def test_load_predictions_formats(tmp_path: Path, content, expected) -> None:
    assert load_predictions(write(tmp_path / "r.json", content)) == expected


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json\n", "line 1 is not valid JSON"),
        ('[{"question_id": 1, "text": "A"}, {"question_id": 1, "text": "B"}]', "problem 1 twice"),
        ('[{"text": "A"}]', "no question_id/pid"),
        ('[{"question_id": 1, "answer_id": "x"}]', "no text/pred"),
        ('[{"question_id": 1, "text": null}]', "no text/pred"),
        ('{"1": true}', "neither an index nor text"),
        ('{"1": [0]}', "neither an index nor text"),
        ("[3]", "not an object"),
        ("5", "neither an object nor a list"),
    ],
)
def test_load_predictions_errors(tmp_path: Path, content: str, match: str) -> None:
    with pytest.raises(VlreproError, match=match):
        load_predictions(write(tmp_path / "r.json", content))


def test_load_predictions_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(MalformedFileError, match="not UTF-8"):
        load_predictions(str(path))


# ---------------------------------------------------------------------------------------- command line

def sqa_files(tmp_path: Path) -> dict[str, str]:
    problems = dict(PROBLEMS)
    problems["100"] = prob(NAT, "grade1", ["a", "b"], 0, split="val")  # another split: never scored
    splits = {"test": list(PROBLEMS), "val": ["100"], "minival": ["1", "2"]}
    answers = "".join(json.dumps({"question_id": k, "prompt": "p", "text": v if isinstance(v, str) else "AB"[v]}) + "\n"
                      for k, v in PREDICTIONS.items())
    return {"problems": write(tmp_path / "problems.json", problems), "splits": write(tmp_path / "pid_splits.json", splits),
            "answers": write(tmp_path / "answers.jsonl", answers)}


def test_cli_split_field_and_pid_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = sqa_files(tmp_path)
    out = tmp_path / "out" / "sqa.json"
    assert cli_main(["eval", "scienceqa", "--problems", f["problems"], "--results", f["answers"], "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == EXPECTED and json.loads(out.read_text()) == EXPECTED
    # pid_splits.json and a split without a 'split' field of its own, with --subset
    argv = ["eval", "scienceqa", "--problems", f["problems"], "--results", f["answers"], "--pid-splits", f["splits"]]
    assert cli_main(argv) == 0
    assert json.loads(capsys.readouterr().out) == EXPECTED
    assert cli_main(argv + ["--split", "minival"]) == 2  # predictions for pids outside minival
    assert "not in the scored split" in capsys.readouterr().err
    mini = write(tmp_path / "mini.json", {"1": 0, "2": "B"})
    assert cli_main(["eval", "scienceqa", "--problems", f["problems"], "--results", mini, "--pid-splits", f["splits"],
                     "--split", "minival"]) == 0
    assert json.loads(capsys.readouterr().out)["acc_avg"] == 100.0


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing_problems", "ScienceQA problems file not found"),
        ("malformed_problems", "ScienceQA problems file is not valid JSON"),
        ("problems_list", "not a {pid: problem} object"),
        ("missing_results", "ScienceQA results file not found"),
        ("malformed_results", "ScienceQA results file line 1 is not valid JSON"),
        ("empty_results", "ScienceQA results are empty"),
        ("unknown_split", "split 'nosuch' is not in"),
        ("no_split_field", "no problem in"),
        ("missing_prediction", "no prediction for 1 of 9"),
        ("bad_flag", "unrecognized arguments"),
    ],
)
def test_cli_errors_one_line_exit_2(case: str, expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = sqa_files(tmp_path)
    extra: list[str] = []
    if case == "missing_problems":
        f["problems"] = str(tmp_path / "nope.json")
    elif case == "malformed_problems":
        f["problems"] = write(tmp_path / "bad.json", '{"1": {')
    elif case == "problems_list":
        f["problems"] = write(tmp_path / "list.json", [1, 2])
    elif case == "missing_results":
        f["answers"] = str(tmp_path / "nope.jsonl")
    elif case == "malformed_results":
        f["answers"] = write(tmp_path / "bad.jsonl", '{"question_id": 1,\n')
    elif case == "empty_results":
        f["answers"] = write(tmp_path / "empty.jsonl", "")
    elif case == "unknown_split":
        extra = ["--pid-splits", f["splits"], "--split", "nosuch"]
    elif case == "no_split_field":
        extra = ["--split", "minival"]
    elif case == "missing_prediction":
        f["answers"] = write(tmp_path / "short.json", {k: v for k, v in PREDICTIONS.items() if k != "9"})
    elif case == "bad_flag":
        extra = ["--bogus"]
    out = tmp_path / "never.json"
    rc = cli_main(["eval", "scienceqa", "--problems", f["problems"], "--results", f["answers"], "--out", str(out), *extra])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == "" and not out.exists()
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert expect in captured.err


def test_console_end_to_end(tmp_path: Path) -> None:
    f = sqa_files(tmp_path)
    cmd = [sys.executable, "-m", "vlrepro.shared.cli", "eval", "scienceqa", "--problems", f["problems"]]
    ok = subprocess.run(cmd + ["--results", f["answers"]], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == EXPECTED and len(ok.stdout.splitlines()) == 1
    bad = subprocess.run(cmd + ["--results", write(tmp_path / "bad.json", "{oops")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert "ScienceQA results file" in bad.stderr
