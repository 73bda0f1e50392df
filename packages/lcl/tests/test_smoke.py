"""`vlrepro-lcl smoke` end to end (in-process): results.json valid, loss falls, multitest files written."""

from __future__ import annotations

import json

from vlrepro.lcl import cli


def test_smoke_end_to_end(tmp_path):
    out = tmp_path / "smoke"
    assert cli.main(["smoke", "--out", str(out), "training_args.max_steps=16", "training_args.save_steps=8"]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert isinstance(rows, list) and {r["dataset"] for r in rows} == {"ISEKAI_10", "ImageNet1k_test100"}
    for r in rows:
        assert r["package"] == "vlrepro-lcl" and r["metric"] == "accuracy" and 0.0 <= r["value"] <= 1.0
        assert r["transformers"] == "4.31.0" and r["device"] == "cpu" and r["n"] == 16
        assert r["train_steps"] == 16 and r["train_loss_last"] < r["train_loss_first"]
    assert (out / "multitest_ISEKAI_10_extra_prediction.jsonl").read_text().count("\n") == 16
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "train" / "checkpoint-8" / "trainer_state.json").is_file()
