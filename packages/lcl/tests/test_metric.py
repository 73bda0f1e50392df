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
    # spec §3.3: target as decoded with special tokens skipped (no trailing </s>)
    assert [json.loads(x) for x in lines][0] == {"pred": rows[0]["pred"], "target": rows[0]["target"][:-len("</s>")]}
    assert len(lines) == 5
    res = json.loads((tmp_path / "multitest_ISEKAI_10_results.json").read_text())
    assert res["multitest_ISEKAI_10_accuracy"] == 0.4


def test_written_predictions_rescore_identically_with_vlrepro_eval_lcl(tmp_path, capsys):
    """The multitest JSONL we write, scored by `vlrepro eval lcl` with the ISEKAI file, gives our accuracy (2/5)."""
    import json

    from vlrepro.shared.cli import main as vlrepro_main

    rows = [
        {"pred": 'there is "cactihog" in the image.', "target": T.format("cactihog"), "negative": "hedgehog"},
        {"pred": "cactihog or hedgehog", "target": T.format("cactihog"), "negative": "hedgehog"},
        {"pred": "a hedgehog", "target": T.format("hedgehog"), "negative": "cactihog"},
        {"pred": "an airstone", "target": T.format("airstone"), "negative": "stone"},
        {"pred": "a stone", "target": T.format("airstone"), "negative": "stone"},
    ]
    isekai = tmp_path / "ISEKAI-10.json"  # JSON Lines, aligned with the rows
    pairs = [("Cactihog", "hedgehog"), ("cactihog", "hedgehog"), ("hedgehog", "cactihog"), ("airstone", "stone"), ("airstone", "stone")]
    isekai.write_text("".join(json.dumps({"image_name": "q.png", "positive_list": [], "negative_list": [], "positive_promt": p,
                                          "negative_promt": n, "label_name": p}) + "\n" for p, n in pairs))
    m = score(rows)
    assert m["accuracy"] == 3 / 5
    jsonl = write_multitest(rows, m, tmp_path, "ISEKAI_10")
    capsys.readouterr()
    assert vlrepro_main(["eval", "lcl", "--predictions", str(jsonl), "--isekai", str(isekai)]) == 0
    rescored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rescored["accuracy"] == m["accuracy"] and rescored["correct"] == 3 and rescored["n"] == 5
