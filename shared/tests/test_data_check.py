"""make_mini determinism and speed, ``check`` and the ``vlrepro data`` command, reader errors, env precedence."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
import vlrepro.shared.cli as shared_cli
from vlrepro.shared.data import MINI_DATASETS, check_dataset, load_scienceqa, load_vqa, make_mini
from vlrepro.shared.errors import MalformedFileError, MissingFileError, VlreproError


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
    return make_mini("all", tmp_path_factory.mktemp("data"), seed=0)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No stray dataset variables or ./.env from the machine running the tests."""
    for var in ("VLREPRO_DATA", "COCO_PATH", "VQAV2_PATH", "OKVQA_PATH", "SCIENCEQA_PATH", "ISEKAI_PATH",
                "IMAGENET_PATH", "MME_PATH", "LLAVA_DATA_PATH", "KARPATHY_COCO_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def vlrepro(argv: list[str], monkeypatch) -> int:
    """``vlrepro`` with only the data verbs: the eval metrics are another module's concern (and tests)."""
    monkeypatch.setattr(shared_cli, "EVAL_METRICS", {})
    return shared_cli.main(argv)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- make_mini


def test_make_mini_is_deterministic(tmp_path):
    a, b, c = (make_mini("all", tmp_path / x, seed=s) for x, s in (("a", 0), ("b", 0), ("c", 1)))
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert len(da) > 300 and da == db
    assert set(da) != set(dc) or da != dc  # another seed gives another data set
    same = [k for k in da if k in dc and da[k] == dc[k]]
    assert "vqav2/v2_mscoco_val2014_annotations.json" not in same


@pytest.mark.parametrize("dataset", MINI_DATASETS)
def test_make_mini_is_fast(tmp_path, dataset):
    t = time.perf_counter()
    make_mini(dataset, tmp_path)
    assert time.perf_counter() - t < 2.0


def test_make_mini_n_sets_sizes(tmp_path):
    make_mini("vqav2", tmp_path, n=8)
    assert len(load_vqa("vqav2", "train", root=tmp_path / "vqav2", coco_root=tmp_path / "coco")) == 8
    assert len(load_vqa("vqav2", "val", root=tmp_path / "vqav2", coco_root=tmp_path / "coco")) == 4


def test_make_mini_unknown_dataset(tmp_path):
    with pytest.raises(VlreproError, match="unknown dataset 'gqa'"):
        make_mini("gqa", tmp_path)


def test_make_mini_cli(tmp_path, monkeypatch, capsys):
    assert vlrepro(["data", "make-mini", "scienceqa", "--out", str(tmp_path), "--seed", "3", "--n", "4"],
                   monkeypatch) == 0
    assert str(tmp_path) in capsys.readouterr().out
    assert [len(load_scienceqa(s, root=tmp_path / "scienceqa")) for s in ("train", "val", "test")] == [4, 2, 2]


def test_vlrepro_data_finds_mini_through_vlrepro_data(mini_root, monkeypatch):
    monkeypatch.setenv("VLREPRO_DATA", str(mini_root))
    assert len(load_vqa("vqav2", "val")) == 16  # no root arguments: VLREPRO_DATA/{vqav2,coco}


# --------------------------------------------------------------------------- check


def test_check_mini_has_no_problems(mini_root):
    for name in MINI_DATASETS:
        assert check_dataset(name, mini_root) == [], name


def test_check_cli_ok(mini_root, monkeypatch, capsys):
    assert vlrepro(["data", "check", "all", "--root", str(mini_root)], monkeypatch) == 0
    assert capsys.readouterr().out.strip() == "ok: all"


def _copy(mini_root: Path, tmp_path: Path, *subs: str) -> Path:
    root = tmp_path / "copy"
    for s in subs:
        shutil.copytree(mini_root / s, root / s)
    return root


def test_check_names_a_deleted_file(mini_root, tmp_path, monkeypatch, capsys):
    root = _copy(mini_root, tmp_path, "vqav2", "coco")
    gone = root / "vqav2/v2_OpenEnded_mscoco_train2014_questions.json"
    gone.unlink()
    assert vlrepro(["data", "check", "vqav2", "--root", str(root)], monkeypatch) == 2
    out, err = capsys.readouterr()
    problems = out.strip().splitlines()[:-1]
    assert problems == [problems[0]] and str(gone) in problems[0]
    assert "VQAV2_PATH" in problems[0] and "v2_Questions_Train_mscoco.zip" in problems[0]
    assert out.strip().splitlines()[-1] == "vqav2: 1 problem(s)"
    assert "Traceback" not in out + err


def test_check_names_a_truncated_json(mini_root, tmp_path, monkeypatch, capsys):
    root = _copy(mini_root, tmp_path, "scienceqa")
    bad = root / "scienceqa/pid_splits.json"
    bad.write_bytes(bad.read_bytes()[:40])
    assert vlrepro(["data", "check", "scienceqa", "--root", str(root)], monkeypatch) == 2
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 2 and "not valid JSON" in lines[0] and str(bad) in lines[0]
    assert "SCIENCEQA_PATH" in lines[0] and "Traceback" not in out + err


def test_check_summarises_missing_images(mini_root, tmp_path):
    root = _copy(mini_root, tmp_path, "mme", "isekai")
    (root / "isekai/zorbex/infer_01.png").unlink()
    (root / "mme/MME_Benchmark_release_version/posters/images/post_0002.jpg").unlink()
    shutil.rmtree(root / "mme/MME_Benchmark_release_version/OCR")
    isekai = check_dataset("isekai", root)
    assert len(isekai) == 1 and isekai[0].startswith(f"1 ISEKAI images missing in {root / 'isekai/zorbex'}")
    assert "huggingface.co/datasets/ISEKAI-Portal" in isekai[0]
    mme = check_dataset("mme", root)
    assert len(mme) == 2
    assert "post_0002" in mme[0] and str(root / "mme/MME_Benchmark_release_version/OCR") in mme[1]


def test_check_lists_every_missing_file_at_once(tmp_path):
    problems = check_dataset("okvqa", tmp_path)
    assert len(problems) == 4
    assert [Path(p.split()[3]).name for p in problems] == [
        "OpenEnded_mscoco_train2014_questions.json", "mscoco_train2014_annotations.json",
        "OpenEnded_mscoco_val2014_questions.json", "mscoco_val2014_annotations.json"]
    assert all("okvqa.allenai.org" in p for p in problems)


def test_check_empty_root_reports_every_dataset(tmp_path):
    assert all(check_dataset(name, tmp_path) for name in MINI_DATASETS)


def test_check_unknown_dataset_is_one_line(monkeypatch, capsys):
    assert vlrepro(["data", "check", "gqa"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'gqa'" in err


# --------------------------------------------------------------------------- reader errors


def test_reader_error_names_file_variable_and_fix(tmp_path):
    with pytest.raises(MissingFileError) as e:
        load_vqa("vqav2", "val", root=tmp_path)
    msg = e.value.one_line()
    assert str(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json") in msg
    assert "VQAV2_PATH" in msg and "v2_Questions_Val_mscoco.zip" in msg and "\n" not in msg


def test_reader_rejects_wrong_structure(mini_root, tmp_path):
    root = _copy(mini_root, tmp_path, "vqav2")
    p = root / "vqav2/v2_mscoco_val2014_annotations.json"
    doc = json.loads(p.read_text())
    del doc["annotations"][3]["answers"]
    p.write_text(json.dumps(doc))
    with pytest.raises(MalformedFileError, match="annotation 3 has no key 'answers'"):
        load_vqa("vqav2", "val", root=root / "vqav2", coco_root=mini_root / "coco")


def test_missing_image_is_one_line_error(mini_root, tmp_path):
    root = _copy(mini_root, tmp_path, "vqav2")
    rec = load_vqa("vqav2", "val", root=root / "vqav2", coco_root=tmp_path / "nowhere")[0]
    with pytest.raises(MissingFileError, match="COCO_PATH"):
        rec.load_image()


def test_broken_image_is_malformed(mini_root, tmp_path):
    root = _copy(mini_root, tmp_path, "scienceqa")
    rec = next(r for r in load_scienceqa("val", root=root / "scienceqa") if r.image_path)
    rec.image_path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(MalformedFileError, match="cannot be decoded"):
        rec.load_image()


# --------------------------------------------------------------------------- variables


def test_dataset_variable_beats_vlrepro_data(mini_root, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    shutil.copytree(mini_root / "vqav2", other)
    qpath = other / "v2_OpenEnded_mscoco_val2014_questions.json"
    doc = json.loads(qpath.read_text())
    for q in doc["questions"]:
        q["question"] = "Marked: " + q["question"]
    qpath.write_text(json.dumps(doc))
    monkeypatch.setenv("VLREPRO_DATA", str(mini_root))
    assert not load_vqa("vqav2", "val")[0].question.startswith("Marked: ")
    monkeypatch.setenv("VQAV2_PATH", str(other))
    recs = load_vqa("vqav2", "val")
    assert all(r.question.startswith("Marked: ") for r in recs)
    assert recs[0].image_path.is_relative_to(mini_root / "coco")  # COCO still from VLREPRO_DATA
    # an explicit root beats the variable
    assert not load_vqa("vqav2", "val", root=mini_root / "vqav2")[0].question.startswith("Marked: ")


def test_dotenv_variable_is_read(mini_root, tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(f'export VLREPRO_DATA="{mini_root}"\n')
    assert len(load_vqa("okvqa", "train")) == 32


def test_image_error_hint_names_a_valid_check(mini_root, tmp_path, monkeypatch, capsys):
    """paths.require_file's hint says `vlrepro data check coco`: that command must exist and work."""
    rec = load_vqa("vqav2", "val", root=mini_root / "vqav2", coco_root=tmp_path / "nowhere")[0]
    with pytest.raises(MissingFileError) as e:
        rec.load_image()
    assert "`vlrepro data check coco`" in e.value.one_line()
    assert vlrepro(["data", "check", "coco", "--root", str(mini_root)], monkeypatch) == 0
    assert capsys.readouterr().out.strip() == "ok: coco"
