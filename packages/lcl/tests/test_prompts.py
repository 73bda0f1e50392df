"""Conversation templates and sequence assembly against the original's outputs (golden_lcl.json), byte for byte."""

from __future__ import annotations

import random

import pytest
from vlrepro.lcl.method import (
    VQA_QUESTION_TEMPLATE,
    Round,
    demo_lcl_episode,
    demo_vqa_rounds,
    imagenet_eval_episode,
    isekai_eval_episode,
    render_round,
    round_texts,
    sequence_text,
    two_way_episode,
)
from vlrepro.shared.data.records import EpisodeRecord, TestClassRecord

TRAIN_KEYS = ["train_2way_shot1", "train_2way_shot2"]


def _check(episode, exp, *, train: bool):
    rounds = episode.rounds
    assert [r.template for r in rounds] == [r["conv_template"] for r in exp["rounds"]]
    texts = round_texts(rounds, with_final_answer=train)
    assert texts == [r["text"] for r in exp["rounds"]]
    assert sequence_text(rounds, with_final_answer=train) == exp["sequence_text"]
    assert [r.image for r in rounds] == exp["image_order"]


@pytest.mark.parametrize("key", TRAIN_KEYS)
def test_train_episode_matches_golden(golden, key):
    inp, exp = golden["inputs"][key], golden["expected"][key]
    shot, perm = inp["shot"], inp["shuffle_permutation"]
    fake, real = inp["fake_label"], inp["negative_class"]["class_name"].lower()
    # invert the recorded shuffle to recover the pre-shuffle [anchor x shot, negative x shot] images
    before = [None] * len(perm)
    for i, src in enumerate(perm):
        before[src] = inp["support"][i]["image"]
    positives = [(img, fake) for img in before[:shot]]
    negatives = [(img, real) for img in before[shot:]]
    q = inp["query"]
    q_label = fake if q["answer"] == f'there is "{fake}" in the image.' else real
    ep = two_way_episode(positives, negatives, (q["image"], q_label), inp["query_question_template"],
                         random.Random(0), permutation=perm)
    _check(ep, exp, train=True)


@pytest.mark.parametrize("key", ["eval_imagenet100_shot1", "eval_imagenet100_shot2"])
def test_imagenet100_episode_matches_golden(golden, key):
    inp, exp = golden["inputs"][key], golden["expected"][key]
    classes = [TestClassRecord(**row) for row in inp["test100_pairs_rows"]]
    ep = imagenet_eval_episode(classes, 0, 0, inp["shot"], random.Random(0), permutation=inp["shuffle_permutation"])
    _check(ep, exp, train=False)
    assert render_round(ep.query.template, ep.query.question, ep.query.answer) == exp["eval_target_text"]
    assert ep.negative == "kite"


@pytest.mark.parametrize("key", ["eval_isekai_shot1", "eval_isekai_shot2"])
def test_isekai_episode_matches_golden(golden, key):
    inp, exp = golden["inputs"][key], golden["expected"][key]
    r = inp["isekai_jsonl_rows"][0]
    row = EpisodeRecord(image_name=r["image_name"], positive_list=r["positive_list"], negative_list=r["negative_list"],
                        positive_prompt=r["positive_promt"], negative_prompt=r["negative_promt"], label_name=r["label_name"])
    ep = isekai_eval_episode(row, inp["shot"], random.Random(0), permutation=inp["shuffle_permutation"])
    _check(ep, exp, train=False)
    assert ep.negative == "hedgehog"


def test_demo_lcl_prompt_matches_golden(golden):
    inp, exp = golden["inputs"]["lcl_demo_inference"], golden["expected"]["lcl_demo_inference"]
    ep = demo_lcl_episode(inp["pos_images"], inp["pos_label"], inp["neg_images"], inp["neg_label"],
                          inp["infer_image"], inp["infer_question"])
    assert round_texts(ep.rounds, with_final_answer=False) == [r["text"] for r in exp["rounds"]]
    assert sequence_text(ep.rounds, with_final_answer=False) == exp["sequence_text"]


def test_demo_vqa_prompt_matches_golden(golden):
    inp, exp = golden["inputs"]["vqa_demo_inference"], golden["expected"]["vqa_demo_inference"]
    rounds = demo_vqa_rounds(inp["image"], inp["question"])
    assert round_texts(rounds, with_final_answer=False) == [exp["prompt_text"]]
    assert sequence_text(rounds, with_final_answer=False) == exp["sequence_text"]


@pytest.mark.parametrize("key", ["vqav2_train_LlavaTextProcessV2", "vqav2_test_LlavaTextProcessV2"])
def test_vqav2_plain_prompt_matches_golden(golden, key):
    inp, exp = golden["inputs"][key], golden["expected"][key]
    assert inp["question_template"] == VQA_QUESTION_TEMPLATE
    q = VQA_QUESTION_TEMPLATE.replace("<question>", inp["question"])
    train = inp["mode"] == "train"
    rounds = [Round(inp["image"], q, f"The answer is {inp['multiple_choice_answer']}.", template="vicuna_v1.1")]
    assert sequence_text(rounds, with_final_answer=train) == exp["sequence_text"]


def test_user_text_is_scrubbed():
    ep = demo_lcl_episode(["a"], "x", ["b"], "y", "q", "what <image> is [END EXAMPLE] this<im_start>?")
    assert ep.query.question == "what  is  this?<image>"
