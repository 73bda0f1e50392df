"""Evaluation path on the mini ISEKAI data: a shot sweep writes per-shot multitest files whose JSONL, scored
independently by `vlrepro eval lcl`, gives the accuracy of results.json's rows."""

from __future__ import annotations

import json

from vlrepro.lcl.data import load_eval_set
from vlrepro.lcl.runs import evaluate_sets
from vlrepro.shared.cli import main as vlrepro_main


def test_shot_sweep_and_independent_rescoring(tiny, mini_data, tmp_path, capsys):
    model, tok, proc = tiny
    path = mini_data / "isekai" / "ISEKAI-10.json"
    rows, root = load_eval_set("isekai", path, None)
    out = tmp_path / "eval"
    res = evaluate_sets(model, tok, proc, {"ISEKAI_10": ("isekai", rows, root, {})}, shots=[1, 2], seed=42, batch_size=4,
                        max_new_tokens=3, device="cpu", output_dir=out, model_name="tiny", config={}, limit=None,
                        paper_values={2: 0.64, 4: 0.63})
    assert [(r["split"], r["shot_per_class"], r["paper_value"], r["n"]) for r in res] == [
        ("2-shot", 1, 0.64, len(rows)), ("4-shot", 2, 0.63, len(rows))]
    for r, shot in zip(res, (1, 2), strict=False):
        jsonl = out / f"multitest_ISEKAI_10_shot{shot}_extra_prediction.jsonl"
        lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
        assert len(lines) == len(rows) and all(set(x) == {"pred", "target"} for x in lines)
        assert lines[0]["target"].endswith(f'ASSISTANT: there is "{rows[0].label_name}" in the image.')
        saved = json.loads((out / f"multitest_ISEKAI_10_shot{shot}_results.json").read_text())
        assert saved[f"multitest_ISEKAI_10_shot{shot}_accuracy"] == r["value"]
        capsys.readouterr()
        assert vlrepro_main(["eval", "lcl", "--predictions", str(jsonl), "--isekai", str(path)]) == 0
        rescored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert rescored["n"] == len(rows) and rescored["accuracy"] == r["value"]
