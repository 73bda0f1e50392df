"""The LCL accuracy rule on hand-written outputs (spec §3.2) through our evaluation path."""

from __future__ import annotations

from vlrepro.lcl.evaluate import score, write_multitest

T = '[FINAL QUESTION]:  USER: Based on the previous examples, what is in the image <image>? ASSISTANT: there is "{}" in the image.</s>'


def test_accuracy_rule_cases(tmp_path):
    rows = [
        {"pred": 'there is "cactihog" in the image.</s>', "target": T.format("cactihog"), "negative": "hedgehog"},  # right
        {"pred": "cactihog or hedgehog", "target": T.format("cactihog"), "negative": "hedgehog"},  # both named: wrong
        {"pred": "Cactihog", "target": T.format("cactihog"), "negative": "hedgehog"},  # case-sensitive: wrong
        {"pred": "an airstone", "target": T.format("airstone"), "negative": "stone"},  # overlap removed first: right
        {"pred": "a stone", "target": T.format("airstone"), "negative": "stone"},  # wrong
    ]
    m = score(rows)
    assert m["correct"] == 2 and m["n"] == 5 and m["accuracy"] == 2 / 5
    write_multitest(rows, m, tmp_path, "ISEKAI_10")
    import json

    lines = (tmp_path / "multitest_ISEKAI_10_extra_prediction.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines][0] == {"pred": rows[0]["pred"], "target": rows[0]["target"]}
    res = json.loads((tmp_path / "multitest_ISEKAI_10_results.json").read_text())
    assert res["multitest_ISEKAI_10_accuracy"] == 0.4
