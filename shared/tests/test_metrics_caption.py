"""COCO caption metrics: hand-computed values, the PTB tokenizer's edge cases, bad input."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
from vlrepro.shared.errors import VlreproError
from vlrepro.shared.metrics.caption import caption_scores, load_coco_captions, ptb_tokenize

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="no java: the PTB tokenizer is a Java program")


# ---- scorers on pre-tokenised captions (no Java) ---------------------------------------------

def test_identical_caption_scores_one_on_bleu_and_rouge():
    refs = {1: ["a red square on a white ground"]}
    s = caption_scores(refs, {1: "a red square on a white ground"}, metrics=("BLEU", "ROUGE_L"), tokenize=False)
    for k in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L"):
        assert s[k] == pytest.approx(1.0, abs=1e-6), k


def test_bleu1_brevity_penalty_and_rouge_by_hand():
    # prediction "the cat" (c=2) vs reference of r=6 words: unigram precision 2/2,
    # brevity penalty exp(1 - r/c) = exp(-2), so BLEU-1 = e^-2.
    # ROUGE-L: LCS("the cat", "a cat sits on the mat") = 1, P = 1/2, R = 1/6, beta = 1.2:
    # F = (1 + b^2) P R / (R + b^2 P).
    refs = {7: ["a cat sits on the mat"]}
    s = caption_scores(refs, {7: "the cat"}, metrics=("BLEU", "ROUGE_L"), tokenize=False)
    assert s["Bleu_1"] == pytest.approx(math.exp(-2), rel=1e-6)
    p, r, b2 = 1 / 2, 1 / 6, 1.2**2
    assert s["ROUGE_L"] == pytest.approx((1 + b2) * p * r / (r + b2 * p), rel=1e-6)


def test_cider_by_hand_two_images():
    # Two images, one four-word reference each (so every n-gram order 1..4 exists), no shared
    # words. For image 1 the prediction equals its
    # reference: each n-gram occurs in 1 of 2 reference sets, idf = log(2/1). Cosine = 1 for every
    # n, length penalty exp(0) = 1, so CIDEr-D = 10 * mean_n(1) = 10 for image 1. Image 2's
    # prediction shares nothing: 0. Corpus CIDEr-D = (10 + 0) / 2 = 5.
    refs = {1: ["red square on top"], 2: ["blue circle below it"]}
    s = caption_scores(refs, {1: "red square on top", 2: "green star far away"}, metrics=("CIDEr",), tokenize=False)
    assert s["CIDEr"] == pytest.approx(5.0, rel=1e-6)


def test_only_predicted_images_are_scored_and_unknown_ids_fail():
    refs = {1: ["a b c d"], 2: ["e f g h"]}
    one = caption_scores(refs, {1: "a b c d"}, metrics=("BLEU",), tokenize=False)
    assert one["Bleu_4"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(VlreproError, match="no reference captions"):
        caption_scores(refs, {3: "x"}, metrics=("BLEU",), tokenize=False)
    with pytest.raises(VlreproError, match="empty"):
        caption_scores(refs, {}, tokenize=False)
    with pytest.raises(VlreproError, match="unknown caption metric"):
        caption_scores(refs, {1: "a"}, metrics=("BLUE",), tokenize=False)


# ---- the PTB tokenizer -------------------------------------------------------------------------

@needs_java
def test_ptb_lowercases_and_drops_punctuation():
    out = ptb_tokenize({"a": ["A Man, riding a HORSE."], "b": ["(It's) red!"]})
    assert out["a"] == ["a man riding a horse"]
    # pycocoevalcap lower-cases before it drops "-LRB-"/"-RRB-", so the bracket tokens survive as
    # "-lrb-"/"-rrb-": a quirk of the official scorer that we keep for identical numbers.
    assert out["b"] == ["-lrb- it 's -rrb- red"]


@needs_java
def test_ptb_keeps_empty_and_line_breaking_captions_aligned():
    # An empty last caption (a model that generated nothing) and captions holding line breaks or
    # form feeds must not shift the following captions onto other images.
    caps = {1: ["first line\nsecond"], 2: ["form\ffeed", "vertical\vtab"], 3: ["ok"], 4: [""]}
    out = ptb_tokenize(caps)
    assert out == {1: ["first line second"], 2: ["form feed", "vertical tab"], 3: ["ok"], 4: [""]}


@needs_java
def test_empty_prediction_scores_zero_not_an_error():
    refs = {1: ["a red square"], 2: ["a blue circle"]}
    s = caption_scores(refs, {1: "a red square", 2: ""}, metrics=("BLEU", "CIDEr"))
    assert s["CIDEr"] >= 0 and math.isfinite(s["CIDEr"])
    alone = caption_scores(refs, {1: "a red square", 2: "zzz"}, metrics=("CIDEr",))
    assert s["CIDEr"] == pytest.approx(alone["CIDEr"])  # an empty caption earns what a wrong one does


# ---- files and CLI -----------------------------------------------------------------------------

def _files(tmp_path, results):
    ann = {"images": [{"id": 1}, {"id": 2}], "annotations": [
        {"image_id": 1, "id": 10, "caption": "a red square"}, {"image_id": 2, "id": 11, "caption": "a blue circle"}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    (tmp_path / "res.json").write_text(results if isinstance(results, str) else json.dumps(results))
    return tmp_path / "ann.json", tmp_path / "res.json"


def test_load_coco_captions_reads_string_ids_and_rejects_duplicates(tmp_path):
    a, r = _files(tmp_path, [{"image_id": "1", "caption": "x"}])
    refs, preds = load_coco_captions(str(a), str(r))
    assert refs == {1: ["a red square"], 2: ["a blue circle"]} and preds == {1: "x"}
    a, r = _files(tmp_path, [{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": "y"}])
    with pytest.raises(VlreproError, match="twice"):
        load_coco_captions(str(a), str(r))


def test_cli_prints_scores_and_bad_input_is_one_line(tmp_path):
    a, r = _files(tmp_path, [{"image_id": 1, "caption": "a red square"}, {"image_id": 2, "caption": "a blue circle"}])
    cmd = [sys.executable, "-m", "vlrepro.shared.cli", "eval", "caption", "--annotations", str(a), "--results", str(r),
           "--metrics", "BLEU,ROUGE_L", "--no-tokenize"]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    scores = json.loads(ok.stdout)
    assert scores["Bleu_1"] == pytest.approx(1.0, abs=1e-6) and scores["ROUGE_L"] == pytest.approx(1.0)
    a, r = _files(tmp_path, "[{not json")
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "res.json" in bad.stderr
