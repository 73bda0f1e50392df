"""``vlrepro data prepare``: Lever-LM's vqav2_hf form, LIVE's annotation subdata, LCL's test100 rebuild."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import vlrepro.shared.cli as shared_cli
from vlrepro.shared.data import load_imagenet_test, load_imagenet_train, make_mini
from vlrepro.shared.data.prepare import build_test100, prepare_live_subdata, prepare_vqav2_hf
from vlrepro.shared.errors import MalformedFileError, VlreproError


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    for var in ("VLREPRO_DATA", "VQAV2_PATH", "IMAGENET_PATH", "COCO_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def vlrepro(argv: list[str], monkeypatch) -> int:
    monkeypatch.setattr(shared_cli, "EVAL_METRICS", {})  # data verbs only
    return shared_cli.main(argv)


def _ann(qid: int, iid: int, answer: str) -> dict:
    return {"question_type": "what color is the", "multiple_choice_answer": answer,
            "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": j} for j in range(1, 11)],
            "image_id": iid, "answer_type": "other", "question_id": qid}


def _write_tiny_vqav2(d: Path) -> None:
    """Two questions per split, written by hand in the official VQAv2 shape."""
    d.mkdir(parents=True)
    for split, base in (("train", 9), ("val", 42)):
        qs = [{"image_id": base, "question": "What color is the square?", "question_id": base * 1000},
              {"image_id": base, "question": "What's on the left?", "question_id": base * 1000 + 1}]
        (d / f"v2_OpenEnded_mscoco_{split}2014_questions.json").write_text(json.dumps(
            {"info": {"v": 2}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {"n": "cc"},
             "data_subtype": f"{split}2014", "questions": qs}))
        (d / f"v2_mscoco_{split}2014_annotations.json").write_text(json.dumps(
            {"info": {"v": 2}, "license": {"n": "cc"}, "data_subtype": f"{split}2014",
             "annotations": [_ann(base * 1000 + 1, base, "a red square"), _ann(base * 1000, base, "red")]}))


def test_vqav2_hf_exact_output(tmp_path):
    d = tmp_path / "vqav2"
    _write_tiny_vqav2(d)
    written = prepare_vqav2_hf(d, subset_size=1, seed=0)
    assert [p.name for p in written] == ["vqav2_mscoco_train2014.json", "vqav2_mscoco_val2014.json",
                                         "vqav2_mscoco_val2014_subset.json",
                                         "vqav2_mscoco_val2014_subset_question_ids.json"]
    val = json.loads((d / "vqav2_hf/vqav2_mscoco_val2014.json").read_text())
    assert val == {"info": {"v": 2}, "license": {"n": "cc"}, "data_subtype": "val2014", "annotations": [
        {**_ann(42001, 42, "a red square"), "question": "What's on the left?"},
        {**_ann(42000, 42, "red"), "question": "What color is the square?"}]}
    train = json.loads((d / "vqav2_hf/vqav2_mscoco_train2014.json").read_text())
    assert [a["question"] for a in train["annotations"]] == ["What's on the left?", "What color is the square?"]
    ids = json.loads((d / "vqav2_hf/vqav2_mscoco_val2014_subset_question_ids.json").read_text())
    sub = json.loads((d / "vqav2_hf/vqav2_mscoco_val2014_subset.json").read_text())
    assert len(ids) == 1 and ids[0] in (42000, 42001)
    assert [a["question_id"] for a in sub["annotations"]] == ids
    assert {k: v for k, v in sub.items() if k != "annotations"} == {
        "info": {"v": 2}, "license": {"n": "cc"}, "data_subtype": "val2014"}
    assert not list((d / "vqav2_hf").glob(".*.tmp"))  # atomic writes leave no temporary files


def test_vqav2_hf_on_mini_via_cli(tmp_path, monkeypatch, capsys):
    make_mini("vqav2", tmp_path)
    monkeypatch.setenv("VLREPRO_DATA", str(tmp_path))
    assert vlrepro(["data", "prepare", "vqav2", "--subset-size", "5", "--seed", "3"], monkeypatch) == 0
    assert capsys.readouterr().out.count("wrote ") == 4
    hf = tmp_path / "vqav2/vqav2_hf"
    questions = {q["question_id"]: q["question"] for q in json.loads(
        (tmp_path / "vqav2/v2_OpenEnded_mscoco_train2014_questions.json").read_text())["questions"]}
    train = json.loads((hf / "vqav2_mscoco_train2014.json").read_text())
    assert len(train["annotations"]) == 32 and train["data_subtype"] == "train2014"
    assert all(a["question"] == questions[a["question_id"]] for a in train["annotations"])
    val_ids = sorted(a["question_id"] for a in json.loads((hf / "vqav2_mscoco_val2014.json").read_text())["annotations"])
    ids = json.loads((hf / "vqav2_mscoco_val2014_subset_question_ids.json").read_text())
    assert ids == sorted(random.Random(3).sample(val_ids, 5))  # the documented seeded draw
    sub = json.loads((hf / "vqav2_mscoco_val2014_subset.json").read_text())
    assert sorted(a["question_id"] for a in sub["annotations"]) == ids


def test_live_subdata(tmp_path, monkeypatch, capsys):
    d = tmp_path / "vqav2"
    _write_tiny_vqav2(d)
    qsub = d / "v2_mscoco_val2014_question_subdata.json"
    qsub.write_text(json.dumps({"questions": [{"image_id": 42, "question": "What's on the left?",
                                                "question_id": 42001}]}))
    assert vlrepro(["data", "prepare", "vqav2", "--form", "live", "--root", str(d)], monkeypatch) == 0
    out = json.loads((d / "v2_mscoco_val2014_annotations_subdata.json").read_text())
    assert out["annotations"] == [_ann(42001, 42, "a red square")] and out["data_subtype"] == "val2014"
    qsub.write_text(json.dumps({"questions": [{"image_id": 7, "question": "?", "question_id": 7000}]}))
    with pytest.raises(MalformedFileError, match="1 question ids are not in v2_mscoco_val2014_annotations.json"):
        prepare_live_subdata(d)


def test_prepare_missing_input_is_one_line(tmp_path, monkeypatch, capsys):
    assert vlrepro(["data", "prepare", "vqav2", "--root", str(tmp_path / "none")], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "v2_OpenEnded_mscoco_train2014_questions.json" in err and "VQAV2_PATH" in err


# --------------------------------------------------------------------------- ImageNet-100 (LCL)


def _write_tiny_imagenet(d: Path, n_test: int = 2, per_class: int = 3) -> None:
    """map_clsloc with 4 classes, train900 naming classes 1 and 3, images on disk, one val image per class."""
    names = ["kit_fox", "English_setter", "water_ouzel", "kite"][: 2 + n_test]
    wnids = [f"n0000000{i + 1}" for i in range(len(names))]
    (d / "train").mkdir(parents=True)
    (d / "map_clsloc.txt").write_text("".join(f"{w} {i + 1} {n}\n" for i, (w, n) in enumerate(zip(wnids, names, strict=True))))
    rows = [{"class_id": str(i + 1), "class_name": names[i].replace("_", " "),
             "samples": [f"train/{wnids[i]}/{wnids[i]}_1.JPEG"], "neighbors": []} for i in (0, 2)]
    (d / "train900_pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for w in wnids:
        (d / "train" / w).mkdir()
        for k in range(per_class):
            (d / "train" / w / f"{w}_{k + 1}.JPEG").write_bytes(b"")
    (d / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n" + "".join(f"ILSVRC2012_val_{i + 1:08d},{w} 1 2 3 4 \n" for i, w in enumerate(wnids)))


def test_test100_exact_rows(tmp_path):
    d = tmp_path / "imagenet"
    _write_tiny_imagenet(d)
    rows = build_test100(d, context=2, seed=0)
    assert [(r["class_id"], r["class_name"]) for r in rows] == [("2", "English setter"), ("4", "kite")]
    pools = {"2": {"train/n00000002/n00000002_1.JPEG", "train/n00000002/n00000002_2.JPEG",
                   "train/n00000002/n00000002_3.JPEG", "val/ILSVRC2012_val_00000002.JPEG"},
             "4": {"train/n00000004/n00000004_1.JPEG", "train/n00000004/n00000004_2.JPEG",
                   "train/n00000004/n00000004_3.JPEG", "val/ILSVRC2012_val_00000004.JPEG"}}
    for r in rows:
        assert len(r["context_samples"]) == 2 and len(r["test_samples"]) == 2
        assert set(r["context_samples"]) | set(r["test_samples"]) == pools[r["class_id"]]
        assert not set(r["context_samples"]) & set(r["test_samples"])
    assert build_test100(d, context=2, seed=0) == rows  # seeded


def test_test100_needs_an_even_number_of_classes_and_enough_images(tmp_path):
    d = tmp_path / "odd"
    _write_tiny_imagenet(d, n_test=1)
    with pytest.raises(MalformedFileError, match="1 classes are absent from train900"):
        build_test100(d, context=1)
    d = tmp_path / "few"
    _write_tiny_imagenet(d)
    with pytest.raises(VlreproError, match="has 4 images .* need more than 4"):
        build_test100(d, context=4)


def test_test100_rebuilt_on_mini_via_cli(tmp_path, monkeypatch):
    make_mini("imagenet", tmp_path)
    d = tmp_path / "imagenet"
    shipped = (d / "test100_pairs.jsonl").read_text()
    (d / "test100_pairs.jsonl").unlink()
    assert vlrepro(["data", "prepare", "imagenet", "--root", str(d), "--context", "4"], monkeypatch) == 0
    assert (d / "test100_pairs.jsonl").read_text() == shipped  # make_mini writes exactly what prepare builds
    train_ids = {c.class_id for c in load_imagenet_train(d)}
    expected = sorted({line.split()[1] for line in (d / "map_clsloc.txt").read_text().splitlines()} - train_ids, key=int)
    test = load_imagenet_test(d)
    assert [c.class_id for c in test] == expected and len(expected) == 4
    names = {line.split()[1]: line.split()[2].replace("_", " ") for line in (d / "map_clsloc.txt").read_text().splitlines()}
    assert [c.class_name for c in test] == [names[i] for i in expected]
    assert all(len(c.context_samples) == 4 and len(c.test_samples) == 4 for c in test)
    shutil.rmtree(d / "val")
    (d / "LOC_val_solution.csv").unlink()
    with pytest.raises(VlreproError, match="has 6 images"):  # val images no longer pooled: 6 ≤ 6
        build_test100(d, context=6)
