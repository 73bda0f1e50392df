"""make_mini → readers round trip for every dataset, with answers checked against the pixels.

The expected answers are re-derived here from the decoded image (``shapes.describe``) and the
question text, independently of how ``make_mini`` produced them.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from vlrepro.shared.data import (
    CaptionRecord,
    VQARecord,
    imagenet_test_pairs,
    load_blip_karpathy,
    load_coco_captions,
    load_imagenet_test,
    load_imagenet_train,
    load_isekai,
    load_karpathy,
    load_lavin_instructions,
    load_llava,
    load_mme,
    load_scienceqa,
    load_vqa,
    load_vqa_files,
    make_mini,
)
from vlrepro.shared.data.mini import ISEKAI_GROUPS, OKVQA_FRUIT
from vlrepro.shared.data.mme import COGNITION, PERCEPTION
from vlrepro.shared.data.shapes import describe


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
    """Every mini dataset under one data root (read-only for the tests of this module)."""
    return make_mini("all", tmp_path_factory.mktemp("data"), seed=0)


NUM = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4}


def _truth(question: str, scene) -> str:
    """Answer a generated question from a decoded scene (independent oracle)."""
    phrases = {(s.colour, s.shape) for s in scene}
    if m := re.match(r"What colou?r is the (\w+)", question) or re.match(r"Which colou?r is the (\w+)", question):
        (colour,) = [s.colour for s in scene if s.shape == m.group(1)]
        return colour
    if m := re.match(r"What shape is the (\w+) object", question):
        (shape,) = [s.shape for s in scene if s.colour == m.group(1)]
        return shape
    if m := re.match(r"How many (\w+)s are (?:there|in the picture)", question):
        return str(sum(s.shape == m.group(1) for s in scene))
    if m := re.match(r"Is there a (\w+) (\w+) in the (?:picture|image)", question):
        return "yes" if (m.group(1), m.group(2)) in phrases else "no"
    if m := re.match(r"Are there (\w+) shapes", question):
        return "yes" if NUM[m.group(1)] == len(scene) else "no"
    if m := re.match(r"Is the (\w+) (\w+) on the (\w+) side", question):
        (cell,) = [s.cell for s in scene if (s.colour, s.shape) == (m.group(1), m.group(2))]
        return "yes" if (cell % 2 == 0) == (m.group(3) == "left") else "no"
    if question.startswith("Is the image black and white"):
        return "no"
    raise AssertionError(f"no oracle for {question!r}")


def test_vqav2_round_trip(mini_root):
    train = load_vqa("vqav2", "train", root=mini_root / "vqav2", coco_root=mini_root / "coco")
    val = load_vqa("vqav2", "val", root=mini_root / "vqav2", coco_root=mini_root / "coco")
    assert (len(train), len(val)) == (32, 16)
    assert [r.question_id for r in train] == sorted(r.question_id for r in train)
    for r in train + val:
        assert isinstance(r, VQARecord) and len(r.answers) == 10
        assert r.question_id // 1000 == r.image_id  # VQAv2's id convention
        assert r.answer_type in {"other", "number", "yes/no"}
        split = "train" if r in train else "val"
        assert r.image_path == mini_root / f"coco/mscoco2014/{split}2014/COCO_{split}2014_{r.image_id:012d}.jpg"
        img = r.load_image()
        assert img.mode == "RGB" and img.size == (64, 64)
        assert _truth(r.question, describe(img)) == r.multiple_choice_answer
    # realistic noise: some answers differ from the canonical one only in case / punctuation / number words
    noisy = {a for r in train + val for a in r.answers if a != r.multiple_choice_answer}
    assert any(a.endswith(".") for a in noisy) and any(a[0].isupper() for a in noisy)


def test_vqav2_official_top_level_keys(mini_root):
    q = json.loads((mini_root / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    a = json.loads((mini_root / "vqav2/v2_mscoco_val2014_annotations.json").read_text())
    assert set(q) == {"info", "task_type", "data_type", "license", "data_subtype", "questions"}
    assert q["data_subtype"] == "val2014" and q["task_type"] == "Open-Ended"
    assert {"info", "license", "data_subtype", "annotations"} <= set(a)
    ann = a["annotations"][0]
    assert set(ann) == {"question_type", "multiple_choice_answer", "answers", "image_id", "answer_type", "question_id"}
    assert [x["answer_id"] for x in ann["answers"]] == list(range(1, 11))


def test_okvqa_round_trip(mini_root):
    recs = load_vqa("okvqa", "val", root=mini_root / "okvqa", coco_root=mini_root / "coco")
    assert len(recs) == 16
    ann = json.loads((mini_root / "okvqa/mscoco_val2014_annotations.json").read_text())["annotations"][0]
    assert "multiple_choice_answer" not in ann and "raw_answer" in ann["answers"][0]
    for r in recs:
        assert r.question_id // 10 == r.image_id
        assert r.multiple_choice_answer == r.answers[0]  # LIVE: answer = answers[0].answer
        assert r.answers[0::2] == r.answers[1::2]  # 5 answers, each twice
        scene = describe(r.load_image())
        if m := re.match(r"Which fruit is usually the same color as the (\w+)\?", r.question):
            colours = {s.colour for s in scene if s.shape == m.group(1)}
            assert any(r.multiple_choice_answer in {stem for _, stem in OKVQA_FRUIT[c]} for c in colours)
        else:
            m = re.match(r"What is the (\w+) shape called in geometry\?", r.question)
            assert m and r.multiple_choice_answer in {s.shape for s in scene if s.colour == m.group(1)}
            assert any(raw.endswith("s") or raw.startswith("a ") for raw in r.raw_answers)  # stemmed vs raw


def test_vqa_files_with_question_subset(mini_root, tmp_path):
    """LIVE pairs a question subset with the full annotations: only the subset comes back."""
    doc = json.loads((mini_root / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    doc["questions"] = doc["questions"][:5]
    sub = tmp_path / "v2_mscoco_val2014_question_subdata.json"
    sub.write_text(json.dumps(doc))
    recs = load_vqa_files(sub, mini_root / "vqav2/v2_mscoco_val2014_annotations.json",
                          mini_root / "coco/mscoco2014/val2014")
    assert sorted(r.question_id for r in recs) == sorted(q["question_id"] for q in doc["questions"])


@pytest.mark.parametrize("year", [2014, 2017])
def test_coco_captions_round_trip(mini_root, year):
    train = load_coco_captions(year, "train", root=mini_root / "coco")
    val = load_coco_captions(year, "val", root=mini_root / "coco")
    assert (len(train), len(val)) == (32, 16)
    assert [r.image_id for r in val] == sorted(r.image_id for r in val)
    for r in val:
        assert isinstance(r, CaptionRecord) and len(r.captions) == 5 and r.split == "val"
        name = f"COCO_val2014_{r.image_id:012d}.jpg" if year == 2014 else f"{r.image_id:012d}.jpg"
        assert r.image_path == mini_root / f"coco/mscoco{year}/val{year}/{name}"
        _assert_caption_matches(r.captions, describe(r.load_image()))
    assert r.single_caption == r.captions[0]


def _assert_caption_matches(captions: list[str], scene) -> None:
    text = " ".join(captions).lower()
    for s in scene:
        assert f"{s.colour} {s.shape}" in text
    mentioned = set(re.findall(r"(red|green|blue|yellow) (square|circle|triangle)", text))
    assert mentioned == {(s.colour, s.shape) for s in scene}


def test_karpathy_round_trip(mini_root):
    path, images = mini_root / "coco/dataset_coco.json", mini_root / "coco/mscoco2014"
    test = load_karpathy(path, "test", images)
    val = load_karpathy(path, "val", images)
    train = load_karpathy(path, "train", images)
    train_only = load_karpathy(path, "train", images, restval_as_train=False)
    assert (len(val), len(test), len(train_only)) == (5, 5, 32)
    assert len(train) == 32 + 6  # restval (16 - 5 - 5) joins train
    assert {r.split for r in train} == {"train", "restval"}
    assert all(r.image_path.parent.name == "val2014" for r in test)
    for r in test:
        _assert_caption_matches(r.captions, describe(r.load_image()))


def test_scienceqa_round_trip(mini_root):
    sizes = {s: len(load_scienceqa(s, root=mini_root / "scienceqa")) for s in ("train", "val", "test")}
    assert sizes == {"train": 32, "val": 16, "test": 16}
    recs = load_scienceqa("test", root=mini_root / "scienceqa")
    with_image = [r for r in recs if r.image_path is not None]
    assert 0 < len(with_image) < len(recs)  # some problems are text-only, as in ScienceQA
    for r in with_image:
        assert r.image_path == mini_root / f"scienceqa/images/test/{r.pid}/image.png"
        scene = describe(r.load_image())
        assert r.choices[r.answer] == _truth(r.question, scene)
        assert r.caption.startswith("a ")
        _assert_caption_matches([r.caption], scene)
    text_only = [r for r in recs if r.image_path is None]
    assert all(r.caption == "" for r in text_only)
    assert {r.subject for r in recs} <= {"natural science", "social science", "language science"}
    assert all(re.fullmatch(r"grade([1-9]|1[0-2])", r.grade) for r in recs)


def test_scienceqa_split_order_follows_pid_splits(mini_root):
    splits = json.loads((mini_root / "scienceqa/pid_splits.json").read_text())
    assert [r.pid for r in load_scienceqa("val", root=mini_root / "scienceqa")] == splits["val"]
    assert {"train", "val", "test", "trainval", "minitrain", "minival", "minitest"} <= set(splits)


def test_llava_round_trip(mini_root):
    d = mini_root / "llava"
    pre = load_llava(d / "blip_laion_cc_sbu_558k.json", d / "images")
    ins = load_llava(d / "llava_v1_5_mix665k.json", d / "images")
    assert (len(pre), len(ins)) == (32, 32)
    for r in pre:
        assert [t["from"] for t in r.conversations] == ["human", "gpt"]
        assert "<image>" in r.conversations[0]["value"]
        assert r.image_path == d / "images" / r.id[:5] / f"{r.id}.jpg"
        _assert_caption_matches([r.conversations[1]["value"]], describe(r.load_image()))
    text_only = [r for r in ins if r.image_path is None]
    assert len(text_only) == 4
    for r in ins:
        assert [t["from"] for t in r.conversations] == ["human", "gpt"] * (len(r.conversations) // 2)
        if r.image_path is None:
            continue
        assert len(r.conversations) >= 4  # multi-turn
        scene = describe(r.load_image())
        for q, a in zip(r.conversations[0::2], r.conversations[1::2], strict=True):
            m = re.match(r"What color is the (\w+)\?", q["value"])
            if m:
                assert a["value"].lower() == _truth(q["value"], scene)


def test_imagenet_round_trip(mini_root):
    train = load_imagenet_train(mini_root / "imagenet")
    test = load_imagenet_test(mini_root / "imagenet")
    assert (len(train), len(test)) == (8, 4)
    assert not {c.class_id for c in train} & {c.class_id for c in test}
    for c in train:
        assert len(c.samples) == 8 and len(c.neighbors) == 7
        assert c.class_id not in {nb.class_id for nb in c.neighbors}
        colour, shape = c.class_name.split()
        for rel in (c.samples[0], c.samples[-1]):
            assert [(s.colour, s.shape) for s in describe(c.load_image(rel))] == [(colour, shape)]
        nb_colour, nb_shape = c.neighbors[0].class_name.split()
        assert nb_shape == shape or nb_colour == colour  # most similar neighbour first
    for c in test:
        assert (len(c.context_samples), len(c.test_samples)) == (4, 4)
        colour, shape = c.class_name.split()
        assert [(s.colour, s.shape) for s in describe(c.load_image(c.test_samples[0]))] == [(colour, shape)]
    pairs = imagenet_test_pairs(test)
    assert pairs[test[0].class_name] == test[1].class_name and pairs[test[3].class_name] == test[2].class_name


@pytest.mark.parametrize("subset,lines", [("ISEKAI-10", 16), ("ISEKAI-pair", 24)])
def test_isekai_round_trip(mini_root, subset, lines):
    recs = load_isekai(subset, root=mini_root / "isekai")
    assert len(recs) == lines
    pictures = {name: pic for novel, npic, real, rpic in ISEKAI_GROUPS for name, pic in ((novel, npic), (real, rpic))}
    for e in recs:
        assert e.label_name == e.positive_prompt == e.positive_promt != e.negative_promt
        assert len(e.positive_list) == len(e.negative_list) == 4
        assert [(s.colour, s.shape) for s in describe(e.load_query_image())] == [pictures[e.label_name]]
        assert [(s.colour, s.shape) for s in describe(e.load_image(e.negative_list[0]))] == [pictures[e.negative_prompt]]
    raw = json.loads((mini_root / "isekai" / f"{subset}.json").read_text().splitlines()[0])
    assert set(raw) == {"image_name", "positive_list", "negative_list", "positive_promt", "negative_promt", "label_name"}


def test_mme_round_trip(mini_root):
    recs = load_mme(mini_root / "mme")
    assert len(recs) == 14 * 2 * 2
    assert [r.subtask for r in recs[::4]] == list(PERCEPTION + COGNITION)
    assert (mini_root / "mme/MME_Benchmark_release_version/artwork/questions_answers_YN").is_dir()
    assert (mini_root / "mme/MME_Benchmark_release_version/count/coun_0001.jpg").is_file()
    assert recs[-1].image_path.suffix == ".png"  # code_reasoning & co. are PNG in MME
    for r in recs:
        assert r.answer in {"Yes", "No"} and r.question.endswith("Please answer yes or no.")
        assert _truth(r.question, describe(r.load_image())) == r.answer.lower()
    by_image: dict = {}
    for r in recs:
        by_image.setdefault(r.image_path, []).append(r.answer)
    assert all(sorted(a) == ["No", "Yes"] for a in by_image.values())  # MME's yes/no pairs


def test_records_are_frozen(mini_root):
    r = load_mme(mini_root / "mme")[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.answer = "No"  # type: ignore[misc]


def test_blip_karpathy_round_trip(mini_root):
    """ADEM-VL's BLIP files carry the same Karpathy split as dataset_coco.json."""
    d, images = mini_root / "coco/coco_caption", mini_root / "coco/mscoco2014"
    test = load_blip_karpathy(d / "coco_karpathy_test.json", images)
    assert [r.image_id for r in test] == [r.image_id for r in load_karpathy(
        mini_root / "coco/dataset_coco.json", "test", images)]
    train = load_blip_karpathy(d / "coco_karpathy_train.json", images)
    assert len(train) == 38 and all(len(r.captions) == 5 for r in train)  # per-caption entries grouped back
    gt = json.loads((d / "coco_karpathy_test_gt.json").read_text())
    assert {a["image_id"] for a in gt["annotations"]} == {r.image_id for r in test} == {i["id"] for i in gt["images"]}
    for r in test:
        _assert_caption_matches(r.captions, describe(r.load_image()))


def test_lavin_instructions_round_trip(mini_root):
    recs = load_lavin_instructions(mini_root / "scienceqa/all_data.json", mini_root / "coco/mscoco2014/train2014")
    assert len(recs) == 32 and sum(r.image_path is None for r in recs) == 8
    checked = 0
    for r in recs:
        assert r.instruction.startswith("Instruction: ") and r.instruction.endswith("\nResponse:")
        m = re.match(r"Instruction: What color is the (\w+) in the image\?", r.instruction)
        if m and r.image_path:
            checked += 1
            assert r.image_path.name.startswith("COCO_train2014_")
            assert r.answer == f"The {m.group(1)} is {_truth(f'What color is the {m.group(1)}?', describe(r.load_image()))}."
    assert checked > 0
