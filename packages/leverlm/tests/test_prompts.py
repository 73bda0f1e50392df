"""Prompt builders vs the original code's output (golden_leverlm.json), byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vlrepro.leverlm.prompts import (
    generation_text,
    mask_context,
    postprocess,
    processor_text,
    scoring_text,
    sequence_items,
    style_for,
)

GOLDEN = json.loads((Path(__file__).parent / "golden_leverlm.json").read_text(encoding="utf-8"))
KEYS = ["flamingo_9B/caption", "flamingo_9B/vqa", "idefics_9B/caption", "idefics_9B/vqa"]


def _setup(key):
    model, task = key.split("/")
    family = "flamingo" if model.startswith("flamingo") else "idefics"
    mtc = GOLDEN["inputs"]["model_task_config"][key]
    style = style_for(family, task, bos_token=mtc["bos_token"], eos_token=mtc["eos_token"])
    assert style.template == mtc["template"] and style.split_token == mtc["split_token"]
    assert style.instruction == mtc["instruction"] and style.icd_join_char == mtc["icd_join_char"]
    rows = GOLDEN["inputs"]["caption_rows" if task == "caption" else "vqa_rows"]
    a, c, q = rows
    return style, a, c, q


def _items_json(items):
    return [it if isinstance(it, str) else {"image": it["image"]} for it in items]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("order", ["left", "right"])
def test_infoscore_prompts_match_golden(key, order):
    style, a, c, q = _setup(key)
    exp = GOLDEN["expected"][key][f"infoscore_step2_{order}"]
    with_icds = [c, a] if order == "left" else [a, c]
    for name, icds in (("without_candidate", [a]), ("with_candidate", with_icds)):
        items = sequence_items(style, icds, q, query_label=True)
        assert _items_json(items) == exp[name]["items"]
        assert processor_text(style, items, add_eos_token=True) == exp[name]["processor_text"]
        assert scoring_text(style, icds, q) == exp[name]["processor_text"]
        for era in ("paper_era", "head"):
            assert mask_context(style, icds, q, era=era) == exp["mask_context"][era][name]


@pytest.mark.parametrize("key", KEYS)
def test_icl_inference_prompt_matches_golden(key):
    style, a, c, q = _setup(key)
    exp = GOLDEN["expected"][key]["icl_inference_2shot"]
    items = sequence_items(style, [a, c], q, query_label=False)
    assert _items_json(items) == exp["items"]
    assert generation_text(style, [a, c], q) == exp["processor_text"]


def test_consecutive_idefics_images_share_fake_tokens():
    style = style_for("idefics", "caption", bos_token="<s>", eos_token="</s>")
    text = processor_text(style, [{"image": 1}, {"image": 2}, "Caption:x"], is_last_for_generation=True)
    assert text == "<s><fake_token_around_image><image><fake_token_around_image><image><fake_token_around_image>Caption:x"


def test_postprocess():
    assert postprocess("flamingo", "caption", ' a "red" square<|endofchunk|>Output: blue') == "a red square<|endofchunk|>"
    assert postprocess("idefics", "caption", 'a red\n square\nCaption: x') == "a red square"
    assert postprocess("flamingo", "vqa", "red, blue Question: what") == "red"
    assert postprocess("idefics", "vqa", "two\nShort answer:three") == "two"
