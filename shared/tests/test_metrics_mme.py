"""MME: the official yes/no parser, acc / acc+ per subtask (two questions per image, scores x100,
out of 200), the perception and cognition totals, the eval_tool results layout and ``vlrepro eval mme``.

Each subtask's expected score is worked out by hand beside its lines in ``LINES``."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from vlrepro.shared.cli import main as cli_main
from vlrepro.shared.errors import MalformedFileError, MissingFileError, VlreproError
from vlrepro.shared.metrics.mme import COGNITION, PERCEPTION, mme_scores, parse_yes_no, read_results_dir

# subtask: [(image, gt, pred)], two questions per image.
LINES: dict[str, list[tuple[str, str, str]]] = {
    # 4/4 right, 2/2 images -> 100 + 100 = 200
    "existence": [("e1.jpg", "Yes", "yes"), ("e1.jpg", "No", "No"),
                  ("e2.jpg", "Yes", "Yes, there is a dog."), ("e2.jpg", "No", "Not at all.")],
    # right: c1/q2, c2/q1 -> acc 2/4, no image with both -> 50 + 0 = 50; "The answer is no." -> other
    "count": [("c1.jpg", "Yes", "no"), ("c1.jpg", "No", "no"),
              ("c2.jpg", "Yes", "yes"), ("c2.jpg", "No", "The answer is no.")],
    # "  yes": "yes" is not in the first 4 characters "  ye" -> other; acc 1/2, acc+ 0 -> 50
    "position": [("p1.jpg", "Yes", "  yes"), ("p1.jpg", "No", "no")],
    # "YES" and "Nope" (lower-cased; "nope"[:4] holds "no") -> 200
    "color": [("k1.jpg", "Yes", "YES"), ("k1.jpg", "No", "Nope")],
    # acc 3/6 = 0.5, acc+ 1/3 -> 50 + 33.333... = 83.333...
    "posters": [("m1.jpg", "Yes", "yes"), ("m1.jpg", "No", "no"),
                ("m2.jpg", "Yes", "yes"), ("m2.jpg", "No", "yes"),
                ("m3.jpg", "Yes", "no"), ("m3.jpg", "No", "yes")],
    # "eyes" holds "yes" -> yes (right); "I know" -> "i kn" -> other -> acc 1/2, acc+ 0 -> 50
    "celebrity": [("s1.jpg", "Yes", "eyes"), ("s1.jpg", "No", "I know")],
    "scene": [("n1.jpg", "Yes", "yes"), ("n1.jpg", "No", "no")],          # 200
    "landmark": [("l1.jpg", "Yes", "no"), ("l1.jpg", "No", "yes")],       # 0
    "artwork": [("a1.jpg", "yes", "yes"), ("a1.jpg", "no", "no")],        # lower-case GT too: 200
    # an empty answer is other -> 50
    "OCR": [("o1.jpg", "Yes", "yes"), ("o1.jpg", "No", "")],
    "commonsense_reasoning": [("r1.png", "Yes", "Yes."), ("r1.png", "No", "No.")],          # 200
    "numerical_calculation": [("u1.png", "Yes", "no"), ("u1.png", "No", "no")],             # 50
    # "Not sure" -> no (right); "The answer is yes" -> other -> 50
    "text_translation": [("t1.png", "No", "Not sure"), ("t1.png", "Yes", "The answer is yes")],
    "code_reasoning": [("d1.png", "Yes", "yes"), ("d1.png", "No", "no"),
                       ("d2.png", "Yes", "YES"), ("d2.png", "No", "no")],                 # 200
}
SCORES = {"existence": 200.0, "count": 50.0, "position": 50.0, "color": 200.0, "posters": 50.0 + (1 / 3) * 100,
          "celebrity": 50.0, "scene": 200.0, "landmark": 0.0, "artwork": 200.0, "OCR": 50.0,
          "commonsense_reasoning": 200.0, "numerical_calculation": 50.0, "text_translation": 50.0,
          "code_reasoning": 200.0}
OTHER = {"count": 1, "position": 1, "celebrity": 1, "OCR": 1, "text_translation": 1}


def official_total(names) -> float:
    s = 0  # process_result: scores = 0; scores += task_score, in the official order
    for name in names:
        s += SCORES[name]
    return s


PERCEPTION_TOTAL = official_total(PERCEPTION)  # 1083.333...
COGNITION_TOTAL = official_total(COGNITION)    # 500


def rows_of(lines: dict[str, list[tuple[str, str, str]]]) -> list[dict]:
    return [{"subtask": t, "image": i, "question": f"Q{k}? Please answer yes or no.", "gt": g, "pred": p}
            for t, items in lines.items() for k, (i, g, p) in enumerate(items)]


def write_dir(root: Path, lines=LINES, newline: str = "\n") -> str:
    root.mkdir(parents=True, exist_ok=True)
    for task, items in lines.items():
        text = "".join(f"{i}\tQ{k}? Please answer yes or no.\t{g}\t{p}{newline}" for k, (i, g, p) in enumerate(items))
        (root / f"{task}.txt").write_bytes(text.encode("utf-8"))
    return str(root)


# ---------------------------------------------------------------------------------------- parser

@pytest.mark.parametrize(
    "text, official, word",
    [
        ("yes", "yes", "yes"),
        ("no", "no", "no"),
        ("Yes", "yes", "yes"),
        ("YES.", "yes", "yes"),
        ("No, it is not.", "no", "no"),
        ("Not sure", "no", "other"),            # "not " holds "no"
        ("None", "no", "other"),
        ("Nope", "no", "other"),
        ("know", "no", "other"),                # "know" holds "no"
        ("I know", "other", "other"),
        ("eyes", "yes", "other"),
        ("yesno", "yes", "other"),              # "yes" is looked for before "no"
        ("The answer is yes", "other", "yes"),  # the official window is only 4 characters
        ("There is no dog", "other", "no"),
        ("yes and no", "yes", "other"),
        (" yes", "yes", "yes"),
        ("  yes", "other", "yes"),
        ("yes\n", "yes", "yes"),                # the official tool keeps the line end
        ("", "other", "other"),
        ("n", "other", "other"),
    ],
)
def test_parse_yes_no(text: str, official: str, word: str) -> None:
    assert parse_yes_no(text) == official
    assert parse_yes_no(text, "official") == official
    assert parse_yes_no(text, "word") == word


def test_parse_unknown_rule() -> None:
    with pytest.raises(VlreproError, match="unknown MME parsing rule 'fuzzy'"):
        parse_yes_no("yes", "fuzzy")
    with pytest.raises(VlreproError, match="unknown MME parsing rule"):
        mme_scores(rows_of(LINES), rule="fuzzy")


# ---------------------------------------------------------------------------------------- scoring

def test_scores_per_subtask_and_totals() -> None:
    out = mme_scores(rows_of(LINES))
    assert {t: s["score"] for t, s in out["subtasks"].items()} == SCORES
    assert out["subtasks"]["posters"] == {"acc": 0.5, "acc_plus": 1 / 3, "score": 50.0 + (1 / 3) * 100,
                                          "questions": 6, "images": 3, "other": 0}
    assert out["subtasks"]["count"] == {"acc": 0.5, "acc_plus": 0.0, "score": 50.0, "questions": 4, "images": 2,
                                        "other": 1}
    assert {t: s["other"] for t, s in out["subtasks"].items() if s["other"]} == OTHER
    assert out["perception"] == PERCEPTION_TOTAL == pytest.approx(1083.3333333)
    assert out["cognition"] == COGNITION_TOTAL == 500.0
    assert out["total"] == pytest.approx(1583.3333333)
    assert out["other"] == 5 and out["missing_subtasks"] == []
    assert list(out) == ["perception", "cognition", "total", "other", "subtasks", "missing_subtasks"]


def test_pairs_by_image_not_by_adjacent_lines() -> None:
    # posters interleaved: m1 q1, m2 q1, m3 q1, m1 q2, ... The official divide_chunks would pair
    # (m1, m2), (m3, m1), (m2, m3); grouping by image keeps the true pairs and the same score.
    items = LINES["posters"]
    shuffled = {"posters": [items[0], items[2], items[4], items[1], items[3], items[5]]}
    assert mme_scores(rows_of(shuffled))["subtasks"]["posters"]["score"] == SCORES["posters"]


def test_same_image_name_in_two_subtasks_is_two_images() -> None:
    lines = {"scene": [("x.jpg", "Yes", "yes"), ("x.jpg", "No", "no")],
             "landmark": [("x.jpg", "Yes", "yes"), ("x.jpg", "No", "yes")]}
    out = mme_scores(rows_of(lines))
    assert (out["subtasks"]["scene"]["score"], out["subtasks"]["landmark"]["score"]) == (200.0, 50.0)


def test_word_rule_changes_only_the_parser() -> None:
    out = mme_scores(rows_of({"text_translation": LINES["text_translation"], "existence": LINES["existence"]}),
                     rule="word")
    # "Not sure" -> other (wrong), "The answer is yes" -> yes (right): acc 1/2, acc+ 0
    assert out["subtasks"]["text_translation"]["score"] == 50.0
    # existence: "Not at all." -> other: acc 3/4, acc+ 1/2 -> 75 + 50
    assert out["subtasks"]["existence"]["score"] == 125.0
    assert out["other"] == 2


def test_missing_answer_is_other_not_no() -> None:
    out = mme_scores([{"subtask": "scene", "image": "a", "gt": "no", "pred": None},
                      {"subtask": "scene", "image": "a", "gt": "yes", "pred": "yes"}])
    assert out["subtasks"]["scene"] == {"acc": 0.5, "acc_plus": 0.0, "score": 50.0, "questions": 2, "images": 1,
                                        "other": 1}


def test_partial_subtasks_are_listed_as_missing() -> None:
    out = mme_scores(rows_of({"OCR": LINES["OCR"], "code_reasoning": LINES["code_reasoning"]}))
    assert (out["perception"], out["cognition"], out["total"]) == (50.0, 200.0, 250.0)
    assert out["missing_subtasks"] == [t for t in PERCEPTION + COGNITION if t not in ("OCR", "code_reasoning")]


@pytest.mark.parametrize(
    "rows, match",
    [
        ([], "empty"),
        (rows_of({"scene": LINES["scene"][:1]}), "image n1.jpg has 1 questions"),
        (rows_of({"scene": LINES["scene"] + [("n1.jpg", "Yes", "yes")]}), "image n1.jpg has 3 questions"),
        (rows_of({"scene": [("n1.jpg", "Maybe", "yes"), ("n1.jpg", "No", "no")]}), "not yes/no"),
        (rows_of({"Existence": LINES["existence"]}), "unknown MME subtask 'Existence'"),
        ([{"subtask": "scene", "image": "a", "gt": "yes"}], "has no 'pred'"),
    ],
)
def test_scoring_errors(rows: list[dict], match: str) -> None:
    with pytest.raises(VlreproError, match=match):
        mme_scores(rows)


def test_matches_an_adjacent_line_restatement_on_random_files(tmp_path: Path) -> None:
    # eval_tool/calculation.py's way, restated: readlines() (line ends kept), pairs of adjacent
    # lines, lower-cased answers through the 4-character rule, task = acc*100 + acc_plus*100,
    # totals summed from 0 in the official subtask order. Exact float equality is expected.
    rng = random.Random(0)
    answers = ["yes", "no", "Yes.", "No", "Not sure", "none", "eyes", "  yes", "The answer is no", "", "maybe", "YES!"]
    lines = {t: [(f"{t}_{i}.jpg", g, rng.choice(answers)) for i in range(rng.randint(1, 6)) for g in ("Yes", "No")]
             for t in PERCEPTION + COGNITION}
    root = Path(write_dir(tmp_path / "res", lines))

    def parse(ans: str) -> str:
        if ans in ("yes", "no"):
            return ans
        return "yes" if "yes" in ans[:4] else "no" if "no" in ans[:4] else "other"

    expected = {}
    for task in PERCEPTION + COGNITION:
        with open(root / f"{task}.txt", encoding="utf-8") as f:
            raw = f.readlines()
        right = both = 0
        for k in range(0, len(raw), 2):
            hits = 0
            for line in raw[k:k + 2]:
                _, _, gt, pred = line.split("\t")
                hits += gt.lower() == parse(pred.lower())
            right += hits
            both += hits == 2
        score = 0
        score += right / len(raw) * 100
        score += both / (len(raw) // 2) * 100
        expected[task] = score
    out = mme_scores(read_results_dir(root))
    assert {t: s["score"] for t, s in out["subtasks"].items()} == expected
    perception = cognition = 0
    for t in PERCEPTION:
        perception += expected[t]
    for t in COGNITION:
        cognition += expected[t]
    assert (out["perception"], out["cognition"]) == (perception, cognition)


# ---------------------------------------------------------------------------------------- files

def test_read_results_dir_round_trip_crlf_blank_lines_and_tabs(tmp_path: Path) -> None:
    lf = read_results_dir(write_dir(tmp_path / "lf"))
    assert lf == rows_of(LINES)
    crlf = read_results_dir(write_dir(tmp_path / "crlf", newline="\r\n"))
    assert crlf == lf
    root = tmp_path / "extra"
    write_dir(root)
    (root / "scene.txt").write_text("\nn1.jpg\tQ0?\tYes\tyes\tand more\n\n   \nn1.jpg\tQ1?\tNo\tno", encoding="utf-8")
    scene = [r for r in read_results_dir(str(root)) if r["subtask"] == "scene"]
    assert [r["pred"] for r in scene] == ["yes\tand more", "no"]  # a tab stays in the answer; no final newline
    assert mme_scores(scene)["subtasks"]["scene"]["score"] == 200.0


def test_read_results_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="directory not found"):
        read_results_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="no MME subtask file"):
        read_results_dir(tmp_path / "empty")
    part = tmp_path / "part"
    write_dir(part, {"OCR": LINES["OCR"]})
    with pytest.raises(MissingFileError, match="missing in .*: existence, count"):
        read_results_dir(part)
    assert len(read_results_dir(part, allow_missing=True)) == 2
    (part / "OCR.txt").write_text("o1.jpg\tQ?\tYes\n", encoding="utf-8")
    with pytest.raises(MalformedFileError, match="line 1 does not have 4 tab-separated fields"):
        read_results_dir(part, allow_missing=True)
    (part / "OCR.txt").write_bytes(b"o1.jpg\tQ?\tYes\t\xff\xfe\n")
    with pytest.raises(MalformedFileError, match="not UTF-8"):
        read_results_dir(part, allow_missing=True)


# ---------------------------------------------------------------------------------------- command line

def test_cli_scores_and_allow_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_dir(tmp_path / "res")
    out = tmp_path / "o" / "mme.json"
    assert cli_main(["eval", "mme", "--results-dir", root, "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text()) == json.loads(json.dumps(mme_scores(rows_of(LINES))))
    assert printed["perception"] == PERCEPTION_TOTAL and printed["cognition"] == 500.0
    part = write_dir(tmp_path / "part", {"scene": LINES["scene"], "landmark": LINES["landmark"]})
    assert cli_main(["eval", "mme", "--results-dir", part]) == 2
    assert "--allow-missing" in capsys.readouterr().err
    assert cli_main(["eval", "mme", "--results-dir", part, "--allow-missing", "--rule", "word"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["perception"], printed["cognition"]) == (200.0, 0.0)
    assert len(printed["missing_subtasks"]) == 12


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing_dir", "MME results directory not found"),
        ("malformed_line", "does not have 4 tab-separated fields"),
        ("odd_questions", "has 1 questions"),
        ("bad_rule", "invalid choice: 'fuzzy'"),
    ],
)
def test_cli_errors_one_line_exit_2(case: str, expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "res"
    write_dir(root)
    extra: list[str] = []
    if case == "missing_dir":
        root = tmp_path / "nope"
    elif case == "malformed_line":
        (root / "count.txt").write_text("c1.jpg Yes yes\n", encoding="utf-8")
    elif case == "odd_questions":
        (root / "scene.txt").write_text("n1.jpg\tQ?\tYes\tyes\n", encoding="utf-8")
    elif case == "bad_rule":
        extra = ["--rule", "fuzzy"]
    out = tmp_path / "never.json"
    rc = cli_main(["eval", "mme", "--results-dir", str(root), "--out", str(out), *extra])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == "" and not out.exists()
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert expect in captured.err


def test_console_end_to_end(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "res")
    cmd = [sys.executable, "-m", "vlrepro.shared.cli", "eval", "mme", "--results-dir"]
    ok = subprocess.run(cmd + [root], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    printed = json.loads(ok.stdout)
    assert len(ok.stdout.splitlines()) == 1
    assert printed["perception"] == PERCEPTION_TOTAL and printed["cognition"] == 500.0 and printed["other"] == 5
    assert {t: s["score"] for t, s in printed["subtasks"].items()} == SCORES
    bad = subprocess.run(cmd + [str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert "MME results directory not found" in bad.stderr
