"""v1 / v1_sq templates, virtual-user relabelling and label masks against the golden fixtures (byte for byte)."""

from __future__ import annotations

import random

import pytest
from vlrepro.sophon.conversation import (
    SQ_SYSTEM,
    inference_prompt,
    pieces_text,
    relabel_virtual_user,
    render_conversation,
    supervised_runs,
    tokenize_conversation,
    tokenizer_image_token,
)
from vlrepro.sophon.model import IGNORE_INDEX, IMAGE_TOKEN_INDEX

TRAIN_KEYS = ["train_v1", "train_v1_sq_relabel", "train_v1_sq_no_relabel"]


@pytest.mark.parametrize("key", TRAIN_KEYS)
def test_training_prompt_and_supervised_text_match_golden(golden, tokenizer, key):
    inp, exp = golden["inputs"][key], golden["expected"][key]
    tok = tokenize_conversation(inp["sample"]["conversations"], tokenizer, inp["version"], has_image=True,
                                sq_r=inp["sq_r"] or 0.0, rng=random.Random(0))
    assert tok.prompt == exp["prompt_text"]
    assert "<s>" + tok.prompt == exp["sequence_text"]
    assert not tok.mismatch
    runs = [pieces_text(r, tokenizer) for r in supervised_runs(tok.input_ids, tok.labels)]
    assert runs == exp["supervised_text"]
    # the golden spans index the same substrings of sequence_text
    assert [exp["sequence_text"][a:b] for a, b in exp["supervised_spans"]] == exp["supervised_text"]
    assert int((tok.input_ids == IMAGE_TOKEN_INDEX).sum()) == exp["n_image_tokens_in_input_ids"]
    # BOS, system, USER turns and the image id are never supervised
    assert tok.labels[0] == IGNORE_INDEX
    assert tok.labels[tok.input_ids == IMAGE_TOKEN_INDEX].eq(IGNORE_INDEX).all()


@pytest.mark.parametrize("key", ["inference_v1", "inference_vicuna_v1", "inference_v1_sq"])
def test_inference_prompts_match_golden(golden, key):
    inp, exp = golden["inputs"][key], golden["expected"][key]
    assert inference_prompt(inp["question"]["text"], inp["conv_mode"]) == exp["prompt_text"]


def test_sq_system_prompt_keeps_the_missing_space():
    assert "questions.Also, the artificial" in SQ_SYSTEM


CONV = [{"from": "human", "value": "<image>\nQ1"}, {"from": "gpt", "value": "A1"},
        {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"},
        {"from": "human", "value": "Q3"}, {"from": "gpt", "value": "A3"}]


def test_relabel_all_none_and_text_only():
    always = relabel_virtual_user(CONV, 1.0, random.Random(0), has_image=True)
    assert [t["from"] for t in always] == ["human", "gpt", "vuser", "gpt", "vuser", "gpt"]
    assert always[2]["value"] == "Q2</s>" and always[0]["value"] == CONV[0]["value"]
    never = relabel_virtual_user(CONV, 0.0, random.Random(0), has_image=True)
    assert never == CONV
    rng = random.Random(0)
    text_only = relabel_virtual_user(CONV, 1.0, rng, has_image=False)
    assert text_only == CONV
    assert rng.random() == random.Random(0).random()  # text-only samples draw nothing


def test_relabel_rate_is_sq_r():
    rng = random.Random(123)
    n = sum(t["from"] == "vuser" for _ in range(2000) for t in relabel_virtual_user(CONV, 0.5, rng, has_image=True))
    assert 0.45 < n / 4000 < 0.55


def test_rendering_after_vuser_turn():
    text = render_conversation(relabel_virtual_user(CONV, 1.0, None, has_image=True), "v1_sq")
    assert text.endswith("ASSISTANT: A1</s>VUSER: Q2</s> ASSISTANT: A2</s>VUSER: Q3</s> ASSISTANT: A3</s>")


def test_vuser_labels_supervise_questions_and_answers(tokenizer):
    tok = tokenize_conversation(CONV, tokenizer, "v1_sq", has_image=True, sq_r=1.0, rng=random.Random(0))
    runs = [pieces_text(r, tokenizer) for r in supervised_runs(tok.input_ids, tok.labels)]
    assert runs == [" A1</s>", " Q2</s>", " A2</s>", " Q3</s>", " A3</s>"]
    tok0 = tokenize_conversation(CONV, tokenizer, "v1_sq", has_image=True, sq_r=0.0, rng=random.Random(0))
    assert [pieces_text(r, tokenizer) for r in supervised_runs(tok0.input_ids, tok0.labels)] == [" A1</s>", " A2</s>", " A3</s>"]


def test_text_only_sample_uses_sq_system_and_no_image(tokenizer):
    conv = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]
    tok = tokenize_conversation(conv, tokenizer, "v1_sq", has_image=False, sq_r=1.0, rng=random.Random(0))
    assert tok.prompt == SQ_SYSTEM + " USER: Hi ASSISTANT: Hello</s>"
    assert (tok.input_ids == IMAGE_TOKEN_INDEX).sum() == 0
    assert [pieces_text(r, tokenizer) for r in supervised_runs(tok.input_ids, tok.labels)] == [" Hello</s>"]


def test_plain_template_supervises_caption_and_newline(tokenizer):
    conv = [{"from": "human", "value": "Describe.\n<image>"}, {"from": "gpt", "value": "a red square"}]
    tok = tokenize_conversation(conv, tokenizer, "plain", has_image=True)
    assert tok.prompt == "<image>a red square\n"
    assert tok.input_ids[:2].tolist() == [tokenizer.bos_token_id, IMAGE_TOKEN_INDEX]
    assert tok.labels[:2].tolist() == [IGNORE_INDEX, IGNORE_INDEX]
    assert (tok.labels[2:] == tok.input_ids[2:]).all()


def test_tokenizer_image_token_single_bos(tokenizer):
    ids = tokenizer_image_token("USER: <image>\nhi", tokenizer)
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert ids.count(IMAGE_TOKEN_INDEX) == 1
