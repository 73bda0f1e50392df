"""Evaluation (spec §5): answer formats scored offline with known answers, caption cleanup, POPE, the --sq loop."""

from __future__ import annotations

import json

import pytest
import torch
from vlrepro.shared.data import make_mini
from vlrepro.shared.paper_cli import compose
from vlrepro.sophon import evaluate as ev
from vlrepro.sophon.conversation import get_template


def test_normalize_caption_like_eval_image_caption():
    text = 'A "Red" Circle (big)! on: the; table~ #1 * with  many words ' + "w " * 30
    out = ev.normalize_caption(text, max_words=20)
    assert out.split()[:9] == ["a", "red", "circle", "big", "on", "the", "table", "1", "with"]
    assert len(out.split()) == 20
    assert ev.normalize_caption("Two dogs.") == "two dogs"


def test_pope_scores_hand_computed():
    labels = ["yes", "yes", "no", "no", "yes"]
    answers = ["Yes, there is.", "No.", "Yes", "There is not a dog.", "yes"]
    # predictions: yes, no, yes, no, yes -> TP 2, FN 1, FP 1, TN 1
    s = ev.pope_scores(labels, answers)
    assert s["accuracy"] == pytest.approx(60.0)
    assert s["precision"] == pytest.approx(100 * 2 / 3) and s["recall"] == pytest.approx(100 * 2 / 3)
    assert s["F1"] == pytest.approx(100 * 2 / 3) and s["yes_ratio"] == pytest.approx(60.0)


def test_scienceqa_prompt_format():
    p = ev.scienceqa_prompt("Which is a mammal?", ["cat", "trout"], hint="Look closely.")
    assert p == "Context: Look closely.\nWhich is a mammal?\nA. cat\nB. trout\nAnswer with the option's letter from the given choices directly."


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    for name in ("coco2014", "vqav2", "scienceqa"):
        make_mini(name, root, n=8)
    return root


def _oracle_eval(monkeypatch, cfg, oracle):
    """run_eval with the generator replaced by ``oracle(item) -> answer text`` (scoring path only)."""
    def fake_generate(model, tokenizer, image_processor, items, *, done=None, on_answer=None, **kw):
        out = {}
        for it in items:
            text = oracle(it)
            out[it.qid] = {"prompt": it.question, "text": text}
            on_answer(it.qid, it.question, text)
        return out

    monkeypatch.setattr(ev, "generate_answers", fake_generate)
    return ev.run_eval(cfg, model=object(), tokenizer=None, image_processor=None)


def test_vqav2_scored_through_the_shared_vqa_metric(mini, tmp_path, monkeypatch):
    from vlrepro.shared.data import load_vqa

    cfg = compose("vlrepro.sophon.configs", "eval", ["task=vqav2", "split=val", f"vqa_root={mini / 'vqav2'}",
                                                      f"coco_root={mini / 'coco'}", f"out_dir={tmp_path}", "model_id=oracle"])
    recs = load_vqa("vqav2", "val", root=mini / "vqav2", coco_root=mini / "coco")
    right = {r.question_id for r in recs[: len(recs) // 2]}
    anns = {a["question_id"]: a for a in json.loads((mini / "vqav2" / "v2_mscoco_val2014_annotations.json").read_text())["annotations"]}

    def oracle(it):  # the majority answer, capitalised and with a period, for half the questions
        return (anns[it.qid]["multiple_choice_answer"].capitalize() + ".") if it.qid in right else "zebra-xylophone"

    assert all(it.endswith(ev.SHORT_ANSWER) for it in [r.question + "\n" + ev.SHORT_ANSWER for r in recs])
    rows = _oracle_eval(monkeypatch, cfg, oracle)
    assert rows[0]["metric"] == "accuracy" and rows[0]["value"] == pytest.approx(100 * len(right) / len(recs))
    assert json.loads((tmp_path / "results.json").read_text())["value"] == rows[0]["value"]  # one row -> an object
    # the official results file rescores to the same accuracy with the shared `vlrepro eval vqa`
    from vlrepro.shared.cli import main as vlrepro_main

    assert vlrepro_main(["eval", "vqa", "--annotations", str(mini / "vqav2" / "v2_mscoco_val2014_annotations.json"),
                         "--results", str(tmp_path / "vqav2_val_results.json"), "--subset", "--out", str(tmp_path / "x.json")]) == 0
    assert json.loads((tmp_path / "x.json").read_text())["overall"] == pytest.approx(rows[0]["value"])
    lines = (tmp_path / "vqav2_val_answers.jsonl").read_text().splitlines()
    assert len(lines) == len(recs) and set(json.loads(lines[0])) == {"question_id", "prompt", "text", "answer_id", "model_id"}


def test_scienceqa_letter_answers_scored(mini, tmp_path, monkeypatch):
    from vlrepro.shared.data import load_scienceqa

    cfg = compose("vlrepro.sophon.configs", "eval", ["task=scienceqa", "split=test", f"scienceqa_root={mini / 'scienceqa'}",
                                                      f"out_dir={tmp_path}", "model_id=oracle"])
    recs = {r.pid: r for r in load_scienceqa("test", mini / "scienceqa") if r.has_image}
    assert recs
    first = sorted(recs)[0]

    def oracle(it):  # the right letter everywhere except the first problem
        r = recs[it.qid]
        assert it.question.endswith(ev.MULTI_CHOICE) and "\nA. " in it.question
        return chr(65 + ((r.answer + (1 if it.qid == first else 0)) % len(r.choices)))

    rows = _oracle_eval(monkeypatch, cfg, oracle)
    assert rows[0]["dataset"] == "scienceqa-img" and rows[0]["n"] == len(recs)
    assert rows[0]["value"] == pytest.approx(100 * (len(recs) - 1) / len(recs), abs=0.006)  # shared metric rounds to 2 d.p.


def test_pope_always_yes(mini, tmp_path, monkeypatch):
    images = sorted((mini / "coco" / "mscoco2014" / "val2014").glob("*.jpg"))[:4]
    qfile = tmp_path / "coco_pope_random.jsonl"
    labels = ["yes", "no", "yes", "no"]
    qfile.write_text("".join(json.dumps({"question_id": i, "image": p.name, "text": "Is there a dog in the image?",
                                         "label": lab}) + "\n" for i, (p, lab) in enumerate(zip(images, labels, strict=False))))
    cfg = compose("vlrepro.sophon.configs", "eval", ["task=pope", f"pope_question_file={qfile}",
                                                      f"pope_image_folder={images[0].parent}", f"out_dir={tmp_path}", "model_id=oracle"])
    rows = _oracle_eval(monkeypatch, cfg, lambda it: "Yes, there is a dog.")
    # precision 1/2, recall 1 -> F1 = 2/3
    assert rows[0]["metric"] == "F1" and rows[0]["value"] == pytest.approx(100 * 2 / 3)


def test_self_questioning_loop_builds_n_shot_turns(tiny_model, tokenizer):
    torch.manual_seed(0)
    images = torch.randn(1, 3, 32, 32)
    answer, final = ev.self_questioning_answer(tiny_model, tokenizer, images, "What is it?", n_shot=2,
                                               max_new_tokens=2, max_question_tokens=3)
    # description turn + 2 self-QA turns re-inserted as USER turns + the real question, plain v1 system prompt
    assert final.count("USER: ") == 4 and "VUSER" not in final and final.count("<image>") == 1
    assert final.startswith(get_template("v1").system)
    assert "USER: <image>\nCan you describe the image in detail? ASSISTANT:" in final
    assert final.endswith("USER: What is it? ASSISTANT:")
    assert isinstance(answer, str)


def test_caption_reference_as_answer_scores_bleu_100(mini, tmp_path, monkeypatch):
    from vlrepro.shared.data import load_karpathy

    ann = mini / "coco" / "dataset_coco.json"
    cfg = compose("vlrepro.sophon.configs", "eval", ["task=caption", "split=test", f"annotation_file={ann}",
                                                      "metrics=[BLEU]", "ptb_tokenize=false", f"out_dir={tmp_path}",
                                                      "model_id=oracle"])
    refs = {r.image_id: r.captions for r in load_karpathy(str(ann), split="test")}
    rows = _oracle_eval(monkeypatch, cfg, lambda it: refs[it.qid][0].upper() + "!!")  # cleanup undoes case/punctuation
    bleu = {r["metric"]: r["value"] for r in rows}
    # exact match to a reference: every n-gram precision is 1 (the mini captions may be shorter than 4 words)
    assert bleu["Bleu_1"] == pytest.approx(100.0, abs=1e-4) and bleu["Bleu_2"] == pytest.approx(100.0, abs=1e-4)
    assert rows[0]["n"] == len(refs)
    results = json.loads((tmp_path / "caption_test_results.json").read_text())
    assert {r["image_id"] for r in results} == set(refs)
    assert all(r["caption"] == ev.normalize_caption(refs[r["image_id"]][0]) for r in results)
