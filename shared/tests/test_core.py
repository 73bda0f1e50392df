"""errors, atomic writes, results.json, paths: the contract pieces every paper relies on."""

from __future__ import annotations

import json
import math
import os

import pytest
from vlrepro.shared import paths
from vlrepro.shared.atomic import atomic_open, write_json_atomic
from vlrepro.shared.errors import MalformedFileError, MissingFileError, VlreproError, read_json, read_jsonl
from vlrepro.shared.results import ours_vs_paper_table, result_row, validate_row, write_results


def test_error_is_one_line_with_fix():
    e = VlreproError("missing file\n  /x/y.json", fix="set  VQAV2_PATH\n")
    assert e.one_line() == "missing file /x/y.json — set VQAV2_PATH"
    assert "\n" not in str(e) and e.exit_code == 2


def test_read_json_missing_and_malformed(tmp_path):
    with pytest.raises(MissingFileError, match="questions file not found"):
        read_json(tmp_path / "q.json", what="questions file")
    bad = tmp_path / "bad.json"
    bad.write_text('{"questions": [1, 2', encoding="utf-8")
    with pytest.raises(MalformedFileError, match="not valid JSON"):
        read_json(bad)
    jl = tmp_path / "a.jsonl"
    jl.write_text('{"a": 1}\n\n{"a": 2}\n{oops\n', encoding="utf-8")
    with pytest.raises(MalformedFileError, match="line 4"):
        read_jsonl(jl)
    jl.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert read_jsonl(jl) == [{"a": 1}, {"a": 2}]


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "out" / "r.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as f:
            f.write('{"v": 2, "half')
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]  # no temp file left
    with pytest.raises(TypeError):
        write_json_atomic(target, {"v": object()})
    assert json.loads(target.read_text()) == {"v": 1}


def _row(**kw):
    base = dict(package="vlrepro-shared", paper="p", task="vqa", dataset="vqav2", split="val", n=3,
                metric="vqa_acc", value=41.5, model="tiny", device="cpu", config={"seed": 1})
    base.update(kw)
    return result_row(**base)


def test_result_row_schema_and_writer(tmp_path):
    row = _row(paper_value=40.0, train={"train_steps": 5, "train_loss_first": 2.0, "train_loss_last": 1.0})
    validate_row(row)
    assert row["paper_value"] == 40.0 and row["train_steps"] == 5 and row["n"] == 3
    assert row["torch"] != "not installed" and row["created"].endswith("+00:00")
    out = write_results(tmp_path, row)
    loaded = json.loads(out.read_text())
    assert loaded["value"] == 41.5 and loaded["config"] == {"seed": 1}
    write_results(tmp_path, [row, _row(metric="b", value=1.0)])
    assert [r["metric"] for r in json.loads(out.read_text())] == ["vqa_acc", "b"]


def test_result_row_rejects_nan_and_incomplete_train():
    with pytest.raises(ValueError, match="NaN"):
        _row(value=math.nan)
    with pytest.raises(ValueError, match="train summary lacks"):
        _row(train={"train_steps": 1})
    with pytest.raises(ValueError, match="lacks"):
        validate_row({"value": 1.0})


def test_ours_vs_paper_table():
    table = ours_vs_paper_table([_row(value=41.5, paper_value=40.0), _row(value=3.0)])
    lines = table.strip().splitlines()
    assert lines[2] == "| vqav2 | val | vqa_acc | tiny | 41.50 | 40.00 | +1.50 |"
    assert lines[3].endswith("| 3.00 | – | – |")


def test_paths_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var, _ in paths.DATASET_VARIABLES.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("VLREPRO_DATA", raising=False)
    assert paths.dataset_dir("vqav2") == paths.Path("data/vqav2")
    (tmp_path / ".env").write_text('# comment\nexport VLREPRO_DATA="/d/root"\nVQAV2_PATH=/from/dotenv\n')
    assert paths.dataset_dir("coco") == paths.Path("/d/root/coco")
    assert paths.dataset_dir("vqav2") == paths.Path("/from/dotenv")
    monkeypatch.setenv("VQAV2_PATH", "/from/env")
    assert paths.dataset_dir("vqav2") == paths.Path("/from/env")
    assert paths.dataset_dir("vqav2", override="/cfg") == paths.Path("/cfg")
    monkeypatch.setenv("RESULT_DIR", str(tmp_path / "res"))
    assert paths.root_dir("results") == tmp_path / "res"


def test_require_file_message_names_variable(tmp_path):
    with pytest.raises(MissingFileError) as ei:
        paths.require_file(tmp_path / "v2_questions.json", dataset="vqav2", how="download it from visualqa.org")
    msg = ei.value.one_line()
    assert "v2_questions.json" in msg and "VQAV2_PATH" in msg and "visualqa.org" in msg
    f = tmp_path / "x"
    f.write_text("1")
    assert paths.require_file(f) == f
    assert os.fspath(paths.require_dir(tmp_path)) == os.fspath(tmp_path)


def test_load_pretrained_one_line_error(tmp_path):
    import transformers
    from vlrepro.shared.errors import load_pretrained

    for bad in (str(tmp_path / "no" / "such" / "dir"), "no-such-org/no-such-model-offline"):
        with pytest.raises(VlreproError, match="cannot load tokenizer") as ei:
            load_pretrained(transformers.AutoTokenizer, bad, what="tokenizer", local_files_only=True)
        assert "\n" not in ei.value.one_line() and bad in ei.value.one_line()


def test_read_jsonl_non_utf8_is_one_line_error(tmp_path):
    from vlrepro.shared.errors import MalformedFileError, read_jsonl

    p = tmp_path / "rows.jsonl"
    p.write_bytes(b'{"a": 1}\n{"b": "\xff\xfe"}\n')
    with pytest.raises(MalformedFileError, match="not UTF-8 text"):
        read_jsonl(p, what="episodes file")
    p.write_bytes(b'{"a": 1}\n\n{"b": 2}\n')
    assert read_jsonl(p) == [{"a": 1}, {"b": 2}]
