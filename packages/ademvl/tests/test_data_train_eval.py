"""Prompts and tokenisation (spec §1.4, §4), the schedule and optimizer groups (§3), ScienceQA scoring (§5)."""

from __future__ import annotations

import json
import math

import pytest
from omegaconf import OmegaConf
from vlrepro.ademvl.data import build_sqa_prompt, pre_caption, sqa_eval_prompt, tokenize_example
from vlrepro.ademvl.evaluate import caption_after_prompt, eval_sqa, first_letter_index
from vlrepro.ademvl.train import effective_lr, lr_at, param_groups
from vlrepro.shared.data import ScienceQARecord


def _record(pid="7", hint="A ball is red.", caption="a red ball", image=None, subject="natural science",
            grade="grade3", answer=1, choices=("red", "blue")) -> ScienceQARecord:
    return ScienceQARecord(pid=pid, question="What  color is the ball?", choices=list(choices), answer=answer, hint=hint,
                           image_path=image, subject=subject, grade=grade, lecture="Colors.\nMore.", solution="Look.",
                           caption=caption, split="test")


# ----------------------------------------------------------------------------- §4 prompts
def test_sqa_training_prompt_cqm_a_exact():
    prompt, target = build_sqa_prompt(_record(), "CQM-A", use_caption=False)
    assert prompt == "Context: A ball is red.\nQuestion: What color is the ball?\nOptions: (A) red (B) blue\nResponse:"
    assert target == "The answer is B."


def test_sqa_eval_prompt_qcm_a_with_caption_exact():
    """The original's eval prompt: QCM-A, the caption appended to the hint, then "The answer is"."""
    assert sqa_eval_prompt(_record(), "QCM-A", use_caption=True) == (
        "Question: What color is the ball?\nContext: A ball is red. a red ball\nOptions: (A) red (B) blue\n"
        "Response:The answer is")
    assert sqa_eval_prompt(_record(hint="", caption="x"), "CQM-A", use_caption=False).startswith("Context: N/A\n")


def test_sqa_lecture_formats_and_bad_format():
    prompt, target = build_sqa_prompt(_record(), "QCML-AE")
    assert prompt.endswith("BECAUSE: Colors.\\nMore.\nResponse:") and target == "The answer is B. BECAUSE: Colors.\\nMore."
    with pytest.raises(ValueError, match="unknown ScienceQA prompt format"):
        build_sqa_prompt(_record(), "XYZ-A")


def test_tokenize_example_masks_the_prompt_and_pads_with_zero(tiny_parts):
    tok = tiny_parts[1]
    ex, lab = tokenize_example(tok, "Question: hi\nResponse:", "The answer is A.", 64)
    p = tok.encode("Question: hi\nResponse:", bos=True, eos=False)
    full = tok.encode("Question: hi\nResponse:The answer is A.", bos=True, eos=True)
    assert ex[: len(full)].tolist() == full and int(ex[len(full):].abs().sum()) == 0
    assert lab[: len(p)].abs().sum() == 0 and lab[len(p) : len(full)].tolist() == full[len(p):]
    assert full[-1] == tok.eos_id and full[0] == tok.bos_id
    ex, lab = tokenize_example(tok, "Question: hi\nResponse:", "The answer is A.", 5)  # truncation as the original
    assert ex.tolist() == full[:5]


def test_caption_helpers():
    assert pre_caption('A Dog, running! On "grass".') == "a dog, running on grass"
    assert pre_caption(" ".join(["w"] * 40)) == " ".join(["w"] * 30)
    assert caption_after_prompt("a picture of a cat on a mat") == "a cat on a mat"
    assert caption_after_prompt(" two dogs ") == "two dogs"


# ----------------------------------------------------------------------------- §3 schedule
def test_effective_lr_rule_and_schedule():
    cfg = OmegaConf.create(dict(blr=9e-3, batch_size=2, accum_iter=2, lr=None))
    assert effective_lr(cfg, world_size=8) == pytest.approx(1.125e-3, rel=1e-12)
    assert effective_lr(OmegaConf.create(dict(blr=9e-3, batch_size=2, accum_iter=2, lr=5e-4)), 8) == 5e-4
    kw = dict(base_lr=1.0, min_lr=0.1, warmup_epochs=2, epochs=20)
    assert lr_at(0, **kw) == 0.0 and lr_at(1, **kw) == pytest.approx(0.5)
    assert lr_at(2, **kw) == pytest.approx(1.0)
    assert lr_at(11, **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(20, **kw) == pytest.approx(0.1)


def test_weight_decay_groups_follow_timm(make_model):
    model = make_model()
    no_decay, decay = param_groups(model, 0.02)
    names = {id(p): n for n, p in model.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    d = {names[id(p)] for p in decay["params"]}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.02
    assert nd == {"adapter_proj.fc1.bias", "adapter_proj.fc2.bias", "adapter_proj_cls.fc1.bias", "adapter_proj_cls.fc2.bias"}
    assert {"adapter_emb1", "adapter_emb2", "adapter_proj.fc1.weight"} <= d
    assert len(d) + len(nd) == sum(1 for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- §5 ScienceQA eval
def test_first_letter_rule():
    assert first_letter_index(" A.", 2) == 0
    assert first_letter_index(" (B)", 3) == 1
    assert first_letter_index(" C", 2) == -1  # not an option of this problem: wrong
    assert first_letter_index(" none", 4) == -1


class _FakeModel:
    """Stands in for ADEMVL.generate: answers by pid (the prompts are checked too)."""

    class clip:  # noqa: N801 - attribute namespace like the real model
        image_size = 8

    def __init__(self, answers: dict[str, str], expect_suffix: str):
        self.answers, self.expect_suffix, self.calls = answers, expect_suffix, []

    def generate(self, prompts, images, flags, max_gen_len, max_total_len):
        assert all(p.endswith(self.expect_suffix) for p in prompts)
        self.calls.append((len(prompts), max_gen_len, flags.tolist()))
        return [self.answers[p.split("ID")[1].split("?")[0]] for p in prompts]


def test_eval_sqa_writes_preds_and_hand_checked_table(tmp_path):
    img = tmp_path / "image.png"
    from PIL import Image

    Image.new("RGB", (8, 8), (255, 0, 0)).save(img)
    recs = []
    for pid, subj, grade, hint, image in [("1", "natural science", "grade2", "h", None),
                                          ("2", "social science", "grade8", "", img),
                                          ("3", "language science", "grade5", "", None),
                                          ("4", "natural science", "grade10", "h", img)]:
        r = _record(pid=pid, subject=subj, grade=grade, hint=hint, image=image, answer=0, choices=("x", "y"))
        recs.append(r.__class__(**{**r.__dict__, "question": f"ID{pid}?"}))
    model = _FakeModel({"1": " A", "2": " B", "3": " A", "4": "??"}, "The answer is")
    cfg = OmegaConf.create(dict(batch_size=3, eval_prompt_format="QCM-A", eval_use_caption=True, sqa_max_gen_len=1,
                                max_seq_len=512, split="test", progress=False))
    rows, scores = eval_sqa(model, cfg, tmp_path, recs, log=lambda *_: None)
    assert json.loads((tmp_path / "preds.json").read_text()) == {"1": 0, "2": 1, "3": 0, "4": -1}
    assert model.calls == [(3, 1, [0, 1, 0]), (1, 1, [1])]
    # correct: 1 (NAT, TXT, G1-6), 3 (LAN, NO, G1-6); wrong: 2 (SOC, IMG, G7-12), 4 (NAT, TXT+IMG, G7-12)
    assert scores["acc_avg"] == 50.0 and scores["acc_natural"] == 50.0 and scores["acc_social"] == 0.0
    assert scores["acc_language"] == 100.0 and scores["acc_has_text"] == 50.0 and scores["acc_has_image"] == 0.0
    assert scores["acc_no_context"] == 100.0 and scores["acc_grade_1_6"] == 100.0 and scores["acc_grade_7_12"] == 0.0
    assert rows[0]["metric"] == "acc_avg" and rows[0]["value"] == 50.0 and rows[0]["paper_key"] is None  # not the full split
    # preds.json is what `vlrepro eval scienceqa --results` reads: the shared scorer gives the same table from the file
    from vlrepro.shared.metrics.scienceqa import scienceqa_accuracy

    problems = {r.pid: dict(choices=r.choices, answer=r.answer, hint=r.hint, image="image.png" if r.image_path else None,
                            subject=r.subject, grade=r.grade) for r in recs}
    again = scienceqa_accuracy(problems, json.loads((tmp_path / "preds.json").read_text()))
    assert {k: again[k] for k in scores if k.startswith("acc")} == {k: scores[k] for k in scores if k.startswith("acc")}


class _Answering:
    """A stand-in for ADEMVL.generate that returns fixed texts in order and records the prompts."""

    class clip:  # noqa: N801
        image_size = 8

    def __init__(self, texts: list[str]):
        self.texts, self.prompts, self.max_gen = list(texts), [], set()

    def generate(self, prompts, images, flags, max_gen_len, max_total_len):
        assert images.shape[1:] == (3, 8, 8) and bool(flags.all())
        self.prompts += prompts
        self.max_gen.add(max_gen_len)
        out, self.texts = self.texts[: len(prompts)], self.texts[len(prompts):]
        return out


def _png(path):
    from PIL import Image

    Image.new("RGB", (8, 8), (0, 128, 255)).save(path)
    return path


def test_eval_caption_files_and_scores_on_the_paper_scale(tmp_path):
    from vlrepro.ademvl.evaluate import eval_caption
    from vlrepro.shared.metrics.caption import caption_scores

    img = _png(tmp_path / "a.png")
    items = [(1, img), (2, img)]
    refs = {1: ["a red square on a table", "a red box"], 2: ["two dogs in the grass", "dogs playing"]}
    model = _Answering(["a picture of a red square on a table", "two dogs"])  # no "picture of": kept whole
    cfg = OmegaConf.create(dict(batch_size=2, max_seq_len=512, caption_metrics=["BLEU", "CIDEr"], caption_tokenize=False,
                                caption_split="val", progress=False))
    rows, scores = eval_caption(model, cfg, tmp_path, items, refs, log=lambda *_: None)
    assert model.prompts == ["a picture of", "a picture of"] and model.max_gen == {20}
    assert json.loads((tmp_path / "test_result.json").read_text()) == [
        {"image_id": 1, "caption": "a red square on a table"}, {"image_id": 2, "caption": "two dogs"}]
    direct = caption_scores(refs, {1: "a red square on a table", 2: "two dogs"}, metrics=("BLEU", "CIDEr"), tokenize=False)
    assert scores == direct
    by = {r["metric"]: r for r in rows}
    assert by["Bleu_4"]["value"] == pytest.approx(100 * direct["Bleu_4"]) and by["CIDEr"]["value"] == pytest.approx(100 * direct["CIDEr"])
    assert by["CIDEr"]["paper_key"] is None  # val: not the paper's Karpathy-test table


def test_eval_mme_writes_the_eval_tool_layout_and_scores(tmp_path):
    from vlrepro.ademvl.evaluate import eval_mme
    from vlrepro.shared.data.records import MMERecord

    a, b = _png(tmp_path / "1.png"), _png(tmp_path / "2.png")
    recs = [MMERecord("existence", a, "Is there a dog? Please answer yes or no.", "Yes"),
            MMERecord("existence", a, "Is there a cat? Please answer yes or no.", "No"),
            MMERecord("existence", b, "Is there a car? Please answer yes or no.", "Yes"),
            MMERecord("existence", b, "Is there a bus? Please answer yes or no.", "No")]
    model = _Answering(["Yes\tit is", "no", "yes", "Yes"])  # image 1 both right, image 2 one right
    cfg = OmegaConf.create(dict(batch_size=1, max_seq_len=512, progress=False))
    for _ in range(2):  # a rerun reuses output/ (the original's makedirs crashes)
        model.texts = ["Yes\tit is", "no", "yes", "Yes"]
        rows, scores = eval_mme(model, cfg, tmp_path, recs, log=lambda *_: None)
    assert model.prompts[0] == "Instruction: Is there a dog? Please answer yes or no.\nResponse:" and model.max_gen == {10}
    lines = (tmp_path / "output" / "existence.txt").read_text().splitlines()
    assert lines[0] == "1.png\tIs there a dog? Please answer yes or no.\tYes\tYes it is"
    # acc = 3/4 = 75, acc+ = 1/2 images = 50: score 125 (MME's calculation.py)
    assert scores["subtasks"]["existence"]["score"] == pytest.approx(125.0)
    assert {r["metric"]: r["value"] for r in rows} == {"perception": pytest.approx(125.0), "cognition": 0.0}
    assert all(r["paper_key"] is None for r in rows)  # 13 subtasks missing: not comparable with the paper
