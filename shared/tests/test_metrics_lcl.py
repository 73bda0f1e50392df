"""LCL / ISEKAI accuracy (specs/lcl.md §3.2): label extraction, the positive-present /
negative-absent rule, the negative label from the ISEKAI line or the ImageNet-100 pair, the
file readers and ``vlrepro eval lcl``. Each row's verdict is worked out beside it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from vlrepro.shared.cli import main as cli_main
from vlrepro.shared.errors import MalformedFileError, MissingFileError, VlreproError
from vlrepro.shared.metrics.lcl import (
    extract_label,
    isekai_negative,
    lcl_accuracy,
    lcl_correct,
    load_imagenet_pairs,
    load_isekai_pairs,
)

PROMPT = "[FINAL QUESTION]:  USER: Based on the previous examples, what is in the image <image>? ASSISTANT: "


def target(label: str) -> str:
    return f'{PROMPT}there is "{label}" in the image.'


# ISEKAI lines (positive_promt, negative_promt) and the predictions made on them, in order.
ISEKAI = [("Cactihog", "Hedgehog"), ("Hedgehog", "Cactihog"), ("airstone", "stone"), ("Icemic", "ice cream"),
          ("Cactihog", "Hedgehog"), ("Icemic", "ice cream"), ("Icemic", "ice cream"), ("Ice cream", "Icemic")]
ISEKAI_ROWS = [
    {"pred": 'there is "cactihog" in the image.', "target": target("cactihog")},    # right
    {"pred": 'there is "cactihog" in the image.', "target": target("hedgehog")},    # wrong: the other class
    {"pred": 'there is "airstone" in the image.', "target": target("airstone")},    # right: "stone" only inside the label
    {"pred": 'there is "Icemic" in the image.', "target": target("icemic")},        # wrong: matching is case-sensitive
    {"pred": "cactihog or hedgehog", "target": target("cactihog")},                 # wrong: the negative is named too
    {"pred": "icemic", "target": None},                                              # target_failed (still in N)
    {"pred": None, "target": target("icemic")},                                      # failed (not text)
    {"pred": "ice cream", "target": f"{PROMPT}The answer is ice cream.</s>"},        # right
]
ISEKAI_EXPECTED = {"accuracy": 3 / 8, "correct": 3, "n": 8, "target_failed": 1, "failed": 1}

# test100_pairs.jsonl: lines 2i and 2i+1 are a pair.
IMAGENET_CLASSES = ["Potter's wheel", "Water ouzel", "St. Bernard", "Ice cream"]
IMAGENET_ROWS = [
    {"pred": 'there is "potters wheel" in the image.', "target": target("potter's wheel")},  # right: label "potters wheel"
    {"pred": "water ouzel", "target": target("water ouzel")},                                # right
    {"pred": "St. Bernard", "target": target("st. bernard")},                                # wrong: label is "st bernard"
    {"pred": "ice cream, not st. bernard", "target": target("ice cream")},                   # wrong: negative named
]
IMAGENET_EXPECTED = {"accuracy": 0.5, "correct": 2, "n": 4, "target_failed": 0, "failed": 0}


# ---------------------------------------------------------------------------------------- rule

@pytest.mark.parametrize(
    "text, label",
    [
        (target("cactihog"), "cactihog"),
        (f'{PROMPT}there is "Water Ouzel" in the image.</s>', "water ouzel"),
        (f"{PROMPT}The answer is ice cream.</s><unk>", "ice cream"),
        ("USER: x ASSISTANT: there is \"a\" in the image. USER: y ASSISTANT: there is 'b' in the image.", "b"),  # last
        (target("potter's wheel"), "potters wheel"),   # quotes and periods go, also inside the label
        (target("st. bernard"), "st bernard"),
        ("  Cactihog  ", "cactihog"),                   # a bare label
        (target("there island"), "land"),              # "there is" is removed wherever it occurs
        (f"{PROMPT}</s>", ""),
        (None, None),
        (3, None),
    ],
)
def test_extract_label(text, label) -> None:
    assert extract_label(text) == label


@pytest.mark.parametrize(
    "pred, label, negative, correct",
    [
        ('there is "cactihog" in the image.', "cactihog", "hedgehog", True),
        ("cactihog", "cactihog", "hedgehog", True),
        ('there is "hedgehog" in the image.', "cactihog", "hedgehog", False),
        ("cactihog and hedgehog", "cactihog", "hedgehog", False),
        ("Cactihog", "cactihog", "hedgehog", False),            # case-sensitive: the prediction is not lower-cased
        ("", "cactihog", "hedgehog", False),
        ("airstone", "airstone", "stone", True),                 # the negative only inside the label
        ("airstone or stone", "airstone", "stone", False),
        # The §3.2 rule deletes the label before looking for the negative, so when the label is
        # part of the negative, naming the negative passes: "airstone" minus "stone" is "air".
        ("airstone", "stone", "airstone", True),
        ("stone", "stone", "airstone", True),
    ],
)
def test_lcl_correct(pred: str, label: str, negative: str, correct: bool) -> None:
    assert lcl_correct(pred, label, negative) is correct
    assert lcl_correct(pred, target(label), negative) is correct


def test_lcl_correct_non_text() -> None:
    assert lcl_correct(None, "cactihog", "hedgehog") is False  # type: ignore[arg-type]
    assert lcl_correct("cactihog", None, "hedgehog") is False  # type: ignore[arg-type]


def test_empty_label_counts_when_the_negative_is_absent() -> None:
    # the original's rule as written: "" is in every string; only the negative can reject it
    assert lcl_correct("anything", f"{PROMPT}</s>", "hedgehog") is True
    assert lcl_correct("a hedgehog", f"{PROMPT}</s>", "hedgehog") is False


@pytest.mark.parametrize(
    "pair, label, negative",
    [
        (["cactihog", "hedgehog"], "cactihog", "hedgehog"),
        (["cactihog", "hedgehog"], "hedgehog", "cactihog"),
        (["cactihog", "hedgehog"], "something else", "hedgehog"),  # the last name that differs
    ],
)
def test_isekai_negative(pair: list[str], label: str, negative: str) -> None:
    assert isekai_negative(pair, label) == negative


def test_isekai_negative_without_another_class() -> None:
    with pytest.raises(VlreproError, match="no class other than 'cactihog'"):
        isekai_negative(["cactihog", "cactihog"], "cactihog")


# ---------------------------------------------------------------------------------------- accuracy

def test_accuracy_with_isekai_pairs() -> None:
    pairs = [[p.lower(), n.lower()] for p, n in ISEKAI]
    assert lcl_accuracy(ISEKAI_ROWS, negatives=pairs) == ISEKAI_EXPECTED


def test_accuracy_with_imagenet_pairs() -> None:
    names = [c.lower() for c in IMAGENET_CLASSES]
    mapping = {names[0]: names[1], names[1]: names[0], names[2]: names[3], names[3]: names[2]}
    assert lcl_accuracy(IMAGENET_ROWS, negatives=mapping) == IMAGENET_EXPECTED


def test_accuracy_with_negatives_on_the_rows() -> None:
    # the lcl package attaches each episode's negative itself; a row's own negative wins
    rows = [{"pred": "cactihog", "target": "cactihog", "negative": "hedgehog"},   # right
            {"pred": "cactihog", "target": "cactihog", "negative": "cacti"},      # right: "cacti" only in the label
            {"pred": "hedgehog!", "target": "hedgehog", "negative": "hedge"}]     # right
    assert lcl_accuracy(rows) == {"accuracy": 1.0, "correct": 3, "n": 3, "target_failed": 0, "failed": 0}
    pairs = [["cactihog", "hedgehog"]] * 3
    rows[0] = {"pred": "cactihog, not a hedgehog", "target": "cactihog", "negative": "tree"}
    assert lcl_accuracy(rows, negatives=pairs)["correct"] == 3  # the row's "tree", not the pair's "hedgehog"
    rows[0]["negative"] = "hedgehog"
    out = lcl_accuracy(rows, negatives=pairs)
    assert (out["correct"], out["accuracy"]) == (2, 2 / 3)


def test_accuracy_errors() -> None:
    pairs = [[p.lower(), n.lower()] for p, n in ISEKAI]
    with pytest.raises(VlreproError, match="empty"):
        lcl_accuracy([], negatives=pairs)
    with pytest.raises(VlreproError, match="16 predictions for 8 ISEKAI lines .*re-run duplicates"):
        lcl_accuracy(ISEKAI_ROWS * 2, negatives=pairs)
    with pytest.raises(VlreproError, match="7 predictions for 8 ISEKAI lines"):
        lcl_accuracy(ISEKAI_ROWS[:7], negatives=pairs)
    with pytest.raises(VlreproError, match="row 0 has no negative label"):
        lcl_accuracy(ISEKAI_ROWS)
    with pytest.raises(VlreproError, match="'cactihog' .*row 0.* not in the ImageNet pairs"):
        lcl_accuracy(ISEKAI_ROWS, negatives={"water ouzel": "ice cream"})


# ---------------------------------------------------------------------------------------- files

def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def isekai_file(path: Path) -> str:
    return write_jsonl(path, [{"image_name": f"q{i}.jpg", "positive_list": [], "negative_list": [], "positive_promt": p,
                               "negative_promt": n, "label_name": p} for i, (p, n) in enumerate(ISEKAI)])


def pairs_file(path: Path, classes=IMAGENET_CLASSES) -> str:
    return write_jsonl(path, [{"class_id": f"n{i:08d}", "class_name": c, "context_samples": [], "test_samples": []}
                              for i, c in enumerate(classes)])


def test_load_isekai_pairs(tmp_path: Path) -> None:
    assert load_isekai_pairs(isekai_file(tmp_path / "ISEKAI-10.json")) == [[p.lower(), n.lower()] for p, n in ISEKAI]
    bad = write_jsonl(tmp_path / "bad.json", [{"positive_promt": "a", "negative_promt": "b"}, {"positive_promt": "a"}])
    with pytest.raises(MalformedFileError, match="ISEKAI line 2 lacks positive_promt/negative_promt"):
        load_isekai_pairs(bad)
    with pytest.raises(MissingFileError, match="ISEKAI file not found"):
        load_isekai_pairs(str(tmp_path / "nope.json"))
    (tmp_path / "broken.json").write_text('{"positive_promt": "a", "negative_promt": "b"}\n{"positive_promt"\n')
    with pytest.raises(MalformedFileError, match="ISEKAI file line 2 is not valid JSON"):
        load_isekai_pairs(str(tmp_path / "broken.json"))
    (tmp_path / "binary.json").write_bytes(b'{"positive_promt": "\xff"}\n')
    with pytest.raises(MalformedFileError, match="not UTF-8"):
        load_isekai_pairs(str(tmp_path / "binary.json"))


def test_load_imagenet_pairs(tmp_path: Path) -> None:
    assert load_imagenet_pairs(pairs_file(tmp_path / "test100_pairs.jsonl")) == {
        "potter's wheel": "water ouzel", "water ouzel": "potter's wheel", "st. bernard": "ice cream",
        "ice cream": "st. bernard"}
    with pytest.raises(MalformedFileError, match="odd number of classes \\(3\\)"):
        load_imagenet_pairs(pairs_file(tmp_path / "odd.jsonl", IMAGENET_CLASSES[:3]))
    with pytest.raises(MalformedFileError, match="pairs line 2 has no class_name"):
        load_imagenet_pairs(write_jsonl(tmp_path / "bad.jsonl", [{"class_name": "a"}, {"class_id": "b"}]))
    with pytest.raises(MissingFileError, match="ImageNet-100 pairs file not found"):
        load_imagenet_pairs(str(tmp_path / "nope.jsonl"))


# ---------------------------------------------------------------------------------------- command line

def test_cli_isekai_and_imagenet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = write_jsonl(tmp_path / "multitest_ISEKAI_10_extra_prediction.jsonl", ISEKAI_ROWS)
    out = tmp_path / "o" / "lcl.json"
    argv = ["eval", "lcl", "--predictions", preds, "--isekai", isekai_file(tmp_path / "ISEKAI-10.json")]
    assert cli_main(argv + ["--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(out.read_text()) == ISEKAI_EXPECTED
    preds = write_jsonl(tmp_path / "multitest_ImageNet1k_test100_extra_prediction.jsonl", IMAGENET_ROWS)
    assert cli_main(["eval", "lcl", "--predictions", preds, "--imagenet-pairs", pairs_file(tmp_path / "p.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out) == IMAGENET_EXPECTED


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing_predictions", "LCL predictions file not found"),
        ("malformed_predictions", "LCL predictions file line 2 is not valid JSON"),
        ("row_without_pred", "line 1 is not an object with pred and target"),
        ("binary_predictions", "LCL predictions file is not UTF-8"),
        ("missing_isekai", "ISEKAI file not found"),
        ("duplicated_run", "16 predictions for 8 ISEKAI lines"),
        ("no_negatives", "has no negative label"),
        ("both_sources", "not allowed with argument"),
    ],
)
def test_cli_errors_one_line_exit_2(case: str, expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "preds.jsonl"
    write_jsonl(preds, ISEKAI_ROWS)
    source = ["--isekai", isekai_file(tmp_path / "ISEKAI-10.json")]
    if case == "missing_predictions":
        preds = tmp_path / "nope.jsonl"
    elif case == "malformed_predictions":
        preds.write_text('{"pred": "a", "target": "a"}\n{"pred": \n', encoding="utf-8")
    elif case == "row_without_pred":
        write_jsonl(preds, [{"target": "a"}])
    elif case == "binary_predictions":
        preds.write_bytes(b'{"pred": "\xff", "target": "a"}\n')
    elif case == "missing_isekai":
        source = ["--isekai", str(tmp_path / "nope.json")]
    elif case == "duplicated_run":
        write_jsonl(preds, ISEKAI_ROWS * 2)
    elif case == "no_negatives":
        source = []
    elif case == "both_sources":
        source += ["--imagenet-pairs", pairs_file(tmp_path / "p.jsonl")]
    out = tmp_path / "never.json"
    rc = cli_main(["eval", "lcl", "--predictions", str(preds), "--out", str(out), *source])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == "" and not out.exists()
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert expect in captured.err


def test_console_end_to_end(tmp_path: Path) -> None:
    preds = write_jsonl(tmp_path / "preds.jsonl", ISEKAI_ROWS)
    cmd = [sys.executable, "-m", "vlrepro.shared.cli", "eval", "lcl", "--isekai", isekai_file(tmp_path / "I.json")]
    ok = subprocess.run(cmd + ["--predictions", preds], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == ISEKAI_EXPECTED and len(ok.stdout.splitlines()) == 1
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text("{oops\n", encoding="utf-8")
    bad = subprocess.run(cmd + ["--predictions", str(bad_file)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert "LCL predictions file line 1 is not valid JSON" in bad.stderr
