"""VQA accuracy: normalisation, leave-one-out scoring, both modes, files and the CLI.

Every expected number below is worked out by hand in the comments (leave-one-out over 10
answers with c matches: the c matching annotators see c-1 matches among the other 9, the 10-c
others see c; acc = mean of min(1, k/3))."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from vlrepro.shared.cli import main as cli_main
from vlrepro.shared.errors import VlreproError
from vlrepro.shared.metrics.vqa import (
    normalize_answer,
    postprocess_vqa_generation,
    process_digit_article,
    process_punctuation,
    vqa_accuracy,
    vqa_per_question_accuracy,
)


def ann(qid: int, answers: list[str], qtype: str = "what is", atype: str = "other", ids: bool = True) -> dict:
    rows = [{"answer": a, "answer_confidence": "yes", **({"answer_id": i + 1} if ids else {})} for i, a in enumerate(answers)]
    return {"question_id": qid, "image_id": 1000 + qid, "question_type": qtype, "answer_type": atype,
            "multiple_choice_answer": answers[0], "answers": rows}


# ---------------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("dont", "don't"),  # contraction table
        ("Dont know", "don't know"),
        ("whats", "what's"),
        ("Im", "im"),  # the table's "Im" key can never match: lookup happens after lower-casing
        ("two", "2"),  # number words
        ("Two dogs.", "2 dogs"),
        ("none", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),  # only none..ten are mapped
        ("1,000", "1000"),  # digit,digit comma: every punctuation mark is deleted
        ("yes.", "yes"),  # a period not followed by a digit goes
        ("3.5", "3.5"),  # ... one followed by a digit stays
        ("a dog", "dog"),  # articles
        ("The Cat", "cat"),
        ("an apple", "apple"),
        ("\tthe\ncat\n", "cat"),  # tabs/newlines become spaces, then strip
        ("red,blue", "red blue"),  # punctuation touching no space becomes a space
        ("red, blue", "red blue"),  # ... touching a space is deleted
        ("left - right", "left right"),
        ("t-shirt", "t shirt"),
        ("black & white", "black & white"),  # "&" is not in the official punctuation list
        ("man's", "man's"),  # nor is the apostrophe
        ("10:30", "10:30"),  # nor the colon (master's list)
        ("", ""),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_process_punctuation_alone_keeps_case_numbers_and_articles() -> None:
    assert process_punctuation("A Dog.") == "A Dog"
    assert process_punctuation("Two") == "Two"
    assert process_punctuation("1,000 dogs, cats") == "1000 dogs cats"
    assert process_digit_article("A Two  THE x") == "2 x"


def test_period_strip_count_quirk() -> None:
    # ``periodStrip.sub("", outText, re.UNICODE)``: re.UNICODE == 32 lands in ``count``.
    text = "a." * 40
    out = process_punctuation(text)
    assert out == "a" * 32 + "a." * 8


def test_postprocess_vqa_generation() -> None:
    assert postprocess_vqa_generation(" yes\nQuestion: what is") == "yes"
    assert postprocess_vqa_generation("red, white and blue Short answer: x") == "red"
    assert postprocess_vqa_generation("two Answer: three") == "two"
    assert postprocess_vqa_generation("on the\ntable") == "on thetable"  # newlines dropped, not spaced
    assert postprocess_vqa_generation("plain") == "plain"


# ---------------------------------------------------------------------------------------- scoring


def partial_credit_fixture() -> tuple[list[dict], dict[int, str]]:
    anns = [
        ann(1, ["2"] + ["3"] * 9, "how many", "number"),  # pred "Two" -> "2": c=1 -> (0 + 9*1/3)/10 = 0.3
        ann(2, ["1000"] * 2 + ["100"] * 8, "how many", "number"),  # "1,000" -> "1000": c=2 -> (2/3*2 + 8*2/3)/10 = 0.6
        ann(3, ["red."] * 3 + ["blue"] * 7, "what color is the"),  # GT "red." -> "red" (answers differ); c=3 -> (3*2/3+7)/10 = 0.9
        ann(4, ["don't know"] * 4 + ["no"] * 6, "what color is the"),  # "Dont know" -> "don't know": c=4 -> 1.0
        ann(5, ["yes"] * 5 + ["no"] * 5, "is the", "yes/no"),  # "maybe": c=0 -> 0.0
    ]
    preds = {1: "Two", 2: "1,000", 3: "Red", 4: "Dont know", 5: "maybe"}
    return anns, preds


def test_partial_credit_and_breakdown() -> None:
    anns, preds = partial_credit_fixture()
    per_q = vqa_per_question_accuracy(anns, preds)
    assert per_q == pytest.approx({1: 0.3, 2: 0.6, 3: 0.9, 4: 1.0, 5: 0.0})
    res = vqa_accuracy(anns, preds)
    assert res == {
        "overall": 56.0,  # 100 * 2.8 / 5
        "perQuestionType": {"how many": 45.0, "what color is the": 95.0, "is the": 0.0},
        "perAnswerType": {"number": 45.0, "other": 95.0, "yes/no": 0.0},
    }
    # the results-list format gives the same
    as_list = [{"question_id": q, "answer": a} for q, a in preds.items()]
    assert vqa_accuracy(anns, as_list) == res


def test_rounding_to_two_decimals() -> None:
    anns = [ann(1, ["cat"] * 10), ann(2, ["dog"] * 10), ann(3, ["cow"] * 10)]
    res = vqa_accuracy(anns, {1: "cat", 2: "x", 3: "y"})
    assert res["overall"] == 33.33  # round(100/3, 2)


def test_official_skips_gt_normalisation_when_all_identical() -> None:
    anns = [ann(1, ["Dog."] * 10)]
    # official: the prediction is normalised to "dog", the 10 identical GT stay "Dog." -> 0
    assert vqa_accuracy(anns, {1: "dog"})["overall"] == 0.0
    assert vqa_accuracy(anns, {1: "Dog."})["overall"] == 0.0
    # openflamingo normalises the GT too: "Dog." -> "dog", 10 matches -> 1.0
    assert vqa_accuracy(anns, {1: "dog"}, mode="openflamingo")["overall"] == 100.0


def test_official_gt_gets_punctuation_only() -> None:
    # answers differ -> GT go through processPunctuation only: "Dog" keeps its capital, "two" its word
    anns = [ann(1, ["Dog"] * 5 + ["cat"] * 5), ann(2, ["two"] * 4 + ["2"] * 6)]
    official = vqa_per_question_accuracy(anns, {1: "dog", 2: "two"})
    assert official == {1: 0.0, 2: 1.0}  # q2: "two" -> "2" matches the six "2" -> 1.0
    flamingo = vqa_per_question_accuracy(anns, {1: "dog", 2: "two"}, mode="openflamingo")
    assert flamingo == {1: 1.0, 2: 1.0}


def test_openflamingo_dict_inequality_quirk_without_answer_id() -> None:
    # VizWiz-style answers without answer_id: identical dicts are all dropped together.
    a = ann(1, ["yes"] * 3 + ["no"] * 7, ids=False)
    # official (index-based): c=3 -> (3 * 2/3 + 7 * 1)/10 = 0.9
    assert vqa_per_question_accuracy([a], {1: "yes"}) == {1: pytest.approx(0.9)}
    # openflamingo: each "yes" sees 0 other "yes" dicts (all three equal it) -> 0; each "no" sees 3 -> 1
    assert vqa_per_question_accuracy([a], {1: "yes"}, mode="openflamingo") == {1: pytest.approx(0.7)}
    # with answer_id the quirk vanishes
    b = ann(1, ["yes"] * 3 + ["no"] * 7, ids=True)
    assert vqa_per_question_accuracy([b], {1: "yes"}, mode="openflamingo") == {1: pytest.approx(0.9)}


def test_openflamingo_missing_answer_type_is_other() -> None:
    a = ann(1, ["cat"] * 10)
    del a["answer_type"]
    assert vqa_accuracy([a], {1: "cat"}, mode="openflamingo")["perAnswerType"] == {"other": 100.0}
    with pytest.raises(VlreproError, match="answer_type"):
        vqa_accuracy([a], {1: "cat"})


def test_subset_missing_unknown_empty() -> None:
    anns, preds = partial_credit_fixture()
    with pytest.raises(VlreproError, match="no answer for 4 of 5"):
        vqa_accuracy(anns, {1: "Two"})
    assert vqa_accuracy(anns, {1: "Two"}, subset=True) == {
        "overall": 30.0, "perQuestionType": {"how many": 30.0}, "perAnswerType": {"number": 30.0}}
    with pytest.raises(VlreproError, match="not in the annotations: 99"):
        vqa_accuracy(anns, {**preds, 99: "x"})
    with pytest.raises(VlreproError, match="not in the annotations"):
        vqa_accuracy(anns, {99: "x"}, subset=True)
    with pytest.raises(VlreproError, match="empty"):
        vqa_accuracy(anns, [])
    with pytest.raises(VlreproError, match="two different answers"):
        vqa_accuracy(anns, [{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}], subset=True)
    with pytest.raises(VlreproError, match="unknown VQA mode"):
        vqa_accuracy(anns, preds, mode="lenient")


def test_string_question_ids_and_questions_check() -> None:
    anns, preds = partial_credit_fixture()
    assert vqa_accuracy(anns, {str(k): v for k, v in preds.items()})["overall"] == 56.0
    questions = [{"question_id": q, "image_id": 1, "question": "?"} for q in preds]
    assert vqa_accuracy(anns, preds, questions)["overall"] == 56.0
    with pytest.raises(VlreproError, match="same question ids"):
        vqa_accuracy(anns, preds, questions[:-1])


def test_inputs_are_not_mutated() -> None:
    anns, preds = partial_credit_fixture()
    before = json.dumps(anns)
    vqa_accuracy(anns, preds, mode="openflamingo")
    vqa_accuracy(anns, preds)
    assert json.dumps(anns) == before


def _naive(anns: list[dict], preds: dict[int, str], mode: str) -> dict[int, float]:
    """A deliberately plain re-statement of the documented rules: no caches, no fast paths."""
    punct = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]

    def punc(t: str) -> str:
        out = t
        for p in punct:
            if (p + " " in t or " " + p in t) or re.search(r"(\d)(,)(\d)", t) is not None:
                out = out.replace(p, "")
            else:
                out = out.replace(p, " ")
        return re.sub(r"\.(?!\d)", "", out, count=32)

    words = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
             "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
    contractions = {"dont": "don't", "cant": "can't", "isnt": "isn't", "whats": "what's"}

    def digits(t: str) -> str:
        ws = [words.get(w, w) for w in t.lower().split()]
        return " ".join(contractions.get(w, w) for w in ws if w not in ("a", "an", "the"))

    def clean(t: str) -> str:
        return t.replace("\n", " ").replace("\t", " ").strip()

    out = {}
    for a in anns:
        pred = digits(punc(clean(preds[a["question_id"]])))
        raw = [x["answer"] for x in a["answers"]]
        if mode == "official":
            gts = [punc(x) for x in raw] if len(set(raw)) > 1 else raw
        else:
            gts = [digits(punc(clean(x))) for x in raw]
        accs = []
        for i in range(len(gts)):
            k = sum(1 for j in range(len(gts)) if j != i and gts[j] == pred)
            accs.append(min(1, k / 3))
        out[a["question_id"]] = sum(accs) / len(accs)
    return out


@pytest.mark.parametrize("mode", ["official", "openflamingo"])
def test_matches_plain_restatement_on_random_fixture(mode: str) -> None:
    rng = random.Random(0)
    vocab = ["yes", "no", "Yes.", "2", "two", "Two", "1,000", "1000", "a dog", "dog", "Dog", "the dog.", "red, white",
             "red white", "t-shirt", "t shirt", "dont know", "don't know", "3.5", "nothing!", "left - right", " cat\n",
             "black/white", "black white", "whats up", "what's up", "none", "0", "(red)", "red"]
    anns, preds = [], {}
    for qid in range(400):
        if rng.random() < 0.2:
            answers = [rng.choice(vocab)] * 10
        else:
            pool = rng.sample(vocab, 3)
            answers = [rng.choice(pool) for _ in range(10)]
        anns.append(ann(qid, answers))
        preds[qid] = rng.choice(vocab + answers)
    # exact float equality: same per-answer terms, summed in the same order
    assert vqa_per_question_accuracy(anns, preds, mode=mode) == _naive(anns, preds, mode)


# ---------------------------------------------------------------------------------------- files and CLI


def write_vqa_files(tmp: Path, preds: dict[int, str] | list | str | None = None) -> dict[str, Path]:
    anns, default_preds = partial_credit_fixture()
    paths = {"questions": tmp / "questions.json", "annotations": tmp / "annotations.json", "results": tmp / "results.json"}
    paths["questions"].write_text(json.dumps({"questions": [
        {"question_id": a["question_id"], "image_id": a["image_id"], "question": "q?"} for a in anns]}))
    paths["annotations"].write_text(json.dumps({"annotations": anns}))
    preds = default_preds if preds is None else preds
    if isinstance(preds, str):
        paths["results"].write_text(preds)
    else:
        rows = [{"question_id": q, "answer": a} for q, a in preds.items()] if isinstance(preds, dict) else preds
        paths["results"].write_text(json.dumps(rows))
    return paths


def vqa_argv(paths: dict[str, Path], *extra: str) -> list[str]:
    return ["eval", "vqa", "--questions", str(paths["questions"]), "--annotations", str(paths["annotations"]),
            "--results", str(paths["results"]), *extra]


def test_cli_prints_one_json_object_and_writes_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_vqa_files(tmp_path)
    out = tmp_path / "sub" / "acc.json"
    assert cli_main(vqa_argv(paths, "--out", str(out))) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed)
    assert result["overall"] == 56.0
    assert set(result) == {"overall", "perQuestionType", "perAnswerType"}
    assert json.loads(out.read_text()) == result


def test_cli_modes_and_subset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_vqa_files(tmp_path, {1: "Two"})
    assert cli_main(vqa_argv(paths)) == 2
    assert "no answer for 4 of 5" in capsys.readouterr().err
    assert cli_main(vqa_argv(paths, "--subset", "--mode", "openflamingo")) == 0
    assert json.loads(capsys.readouterr().out)["overall"] == 30.0


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing", "not found"),
        ("malformed", "not valid JSON"),
        ("unknown", "not in the annotations"),
        ("empty", "empty"),
        ("not_a_list", "not a JSON list"),
        ("bad_mode", "invalid choice"),
    ],
)
def test_cli_errors_one_line_exit_2_no_output(case: str, expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, preds = partial_credit_fixture()
    content: dict | str = {
        "unknown": {**preds, 12345: "x"}, "empty": "[]", "malformed": '[{"question_id": 1, ', "not_a_list": "{}",
    }.get(case, preds)
    paths = write_vqa_files(tmp_path, content)
    if case == "missing":
        paths["results"].unlink()
    out = tmp_path / "acc.json"
    extra = ["--mode", "strict"] if case == "bad_mode" else []
    assert cli_main(vqa_argv(paths, "--out", str(out), *extra)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith("vlrepro") and "error" in err
    assert expect in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_console_script_end_to_end(tmp_path: Path) -> None:
    paths = write_vqa_files(tmp_path)
    script = Path(sys.executable).parent / "vlrepro"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "vlrepro.shared.cli"]
    ok = subprocess.run(cmd + vqa_argv(paths), capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["perAnswerType"] == {"number": 45.0, "other": 95.0, "yes/no": 0.0}
    paths["annotations"].write_text("{not json")
    bad = subprocess.run(cmd + vqa_argv(paths), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert "annotations" in bad.stderr
