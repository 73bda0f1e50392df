"""Prompt builders vs the golden fixtures recorded from the original code (byte for byte)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from vlrepro.live.prompts import VQAPrompt, idefics2_expand_images, idefics2_prompt_text, idefics_prompt_text

GOLDEN = json.loads((Path(__file__).parent / "golden_live.json").read_text(encoding="utf-8"))
DATA = GOLDEN["inputs"]["data"]
P = VQAPrompt()
NAMES = ["student_query_inputs", "query_x", "ice_prompt", "teacher_inputs", "zero_shot_inference", "icl_baseline_2shot_inference"]


def _img(row):
    return {"image": row["image"]}


def built_items(name: str) -> list:
    train, val = DATA["vqav2_train"], DATA["vqav2_val"]
    demos = [(_img(r), r["question"], r["multiple_choice_answer"]) for r in train[:2]]
    q = train[2]
    return {
        "student_query_inputs": P.query_prompt(_img(q), q["question"], q["multiple_choice_answer"]),
        "query_x": P.query_x(_img(q), q["question"]),
        "ice_prompt": P.ice_prompt(demos),
        "teacher_inputs": P.teacher_inputs(demos, _img(q), q["question"], q["multiple_choice_answer"]),
        "zero_shot_inference": P.inference_prompt(_img(val[0]), val[0]["question"]),
        "icl_baseline_2shot_inference": P.inference_prompt(_img(val[0]), val[0]["question"], demos),
    }[name]


def test_prompt_pieces_match_the_original_config():
    for model in ("idefics-9b", "idefics2-8b-base"):
        cfg = GOLDEN["inputs"][model]
        assert P.instruction == cfg["instruction"]
        assert P.icd_template == cfg["prompt_template"]
        assert P.query_template == cfg["query_prompt_template"]
        assert P.sep == cfg["sep_token"]


@pytest.mark.parametrize("model", ["idefics-9b", "idefics2-8b-base"])
@pytest.mark.parametrize("name", NAMES)
def test_item_lists_match_golden(model, name):
    assert built_items(name) == GOLDEN["expected"][model][name]["items"]


def test_dataset_item_matches_golden():
    item = GOLDEN["expected"]["idefics-9b"]["dataset_item"]
    assert built_items("ice_prompt") == item["ice_prompt"]
    assert built_items("student_query_inputs") == item["query_prompt"]
    assert built_items("query_x") == item["query_x"]


@pytest.mark.parametrize("name", NAMES)
def test_idefics_processor_text_matches_golden(name):
    exp = GOLDEN["expected"]["idefics-9b"][name]
    add_eos = bool(exp["prepare_input_kwargs"].get("add_eos_token", False))
    assert idefics_prompt_text(exp["items"], add_eos_token=add_eos) == exp["processor_text"]


@pytest.mark.parametrize("name", NAMES)
def test_idefics2_texts_match_golden(name):
    exp = GOLDEN["expected"]["idefics2-8b-base"][name]
    add_eos = bool(exp["prepare_input_kwargs"].get("add_eos_token", False))
    text = idefics2_prompt_text(exp["items"], add_eos_token=add_eos)
    assert text == exp["processor_input_text"]
    assert idefics2_expand_images(text, 64) == exp["tokenizer_input_text"]


@pytest.mark.parametrize("family", ["idefics", "idefics2"])
def test_real_processor_tokenises_our_text(adapters, red_image, family):
    """The HF processor (keyword call) produces exactly the tokens of our text, BOS first."""
    a = adapters[family]
    items = P.inference_prompt(red_image, "What color is the square?", [(red_image, "How many squares?", "1")])
    enc = a.encode([items], add_eos_token=True)
    text = a.prompt_text(items, add_eos_token=True)
    if family == "idefics":
        ids = a.tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        ids = a.tokenizer(idefics2_expand_images(text, a.processor.image_seq_len))["input_ids"]
    assert enc["input_ids"][0].tolist() == ids
    assert ids[0] == a.tokenizer.bos_token_id and ids[-1] == a.tokenizer.eos_token_id
    assert a.text_length(items) == len(ids) - 1  # the same prompt without the EOS


@pytest.mark.parametrize("family", ["idefics", "idefics2"])
def test_kl_masks_select_the_same_answer_tokens(adapters, red_image, family):
    """Spec §1.3 step 3: teacher and student masks select equal counts, the answer + '.' + EOS, ragged batch."""
    from vlrepro.live.method import answer_position_mask

    a = adapters[family]
    demos = [(red_image, "How many squares are there?", "1"), (red_image, "Is there a red square?", "yes")]
    queries = [("What color is the square?", "red"), ("What shape is the red object in the picture?", "square")]
    student = a.encode([P.query_prompt(red_image, q, ans) for q, ans in queries], add_eos_token=True, padding_side="right")
    teacher = a.encode([P.teacher_inputs(demos[: i + 1], red_image, q, ans) for i, (q, ans) in enumerate(queries)],
                       add_eos_token=True, padding_side="right")
    qx = torch.tensor([a.text_length(P.query_x(red_image, q)) for q, _ in queries])
    ice = torch.tensor([a.text_length(P.ice_prompt(demos[: i + 1])) for i in range(2)])
    sm = answer_position_mask(student["attention_mask"], qx)
    tm = answer_position_mask(teacher["attention_mask"], ice + qx - 1)
    for b, (_, ans) in enumerate(queries):
        s_ids = student["input_ids"][b][sm[b]].tolist()
        t_ids = teacher["input_ids"][b][tm[b]].tolist()
        assert s_ids == t_ids
        assert a.tokenizer.decode(s_ids[:-1]) == ans + "."
        assert s_ids[-1] == a.tokenizer.eos_token_id
