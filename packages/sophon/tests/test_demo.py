"""The Gradio demo's chat function, headless with the tiny model; the app binds 127.0.0.1 by default."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor
from vlrepro.shared.paper_cli import compose
from vlrepro.sophon.conversation import tokenizer_image_token
from vlrepro.sophon.data import preprocess_image
from vlrepro.sophon.demo import DemoModel, history_pairs


@pytest.fixture(scope="module")
def dm(tiny_model, tokenizer):
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return DemoModel(tiny_model, tokenizer, proc, max_new_tokens=5)


def _image():
    return Image.new("RGB", (48, 32), (200, 30, 30))  # not square: exercises the pad path


def _greedy(dm, prompt):
    ids = torch.tensor([tokenizer_image_token(prompt, dm.tokenizer)])
    pix = preprocess_image(_image(), dm.image_processor, "pad")[None]
    new = dm.model.generate(input_ids=ids, images=pix, max_new_tokens=5, do_sample=False,
                            pad_token_id=dm.tokenizer.pad_token_id, eos_token_id=dm.tokenizer.eos_token_id)
    return dm.tokenizer.decode(new[0], skip_special_tokens=True).strip()


def test_respond_is_the_greedy_answer_to_the_v1_prompt(dm):
    reply, history = dm.respond(_image(), "  What is this?  ", None, temperature=0.0)
    prompt = dm.prompt("What is this?", None)
    assert prompt.endswith("USER: <image>\nWhat is this? ASSISTANT:")
    assert reply == _greedy(dm, prompt)
    assert history == [{"role": "user", "content": "What is this?"}, {"role": "assistant", "content": reply}]


def test_second_turn_carries_history_and_image_once(dm):
    _, history = dm.respond(_image(), "Q1", None)
    reply2, history2 = dm.respond(_image(), "Q2", history)
    prompt = dm.prompt("Q2", history)
    assert prompt.count("<image>") == 1
    assert prompt.endswith(f"USER: <image>\nQ1 ASSISTANT: {history[1]['content']}</s>USER: Q2 ASSISTANT:")
    assert reply2 == _greedy(dm, prompt)
    assert len(history2) == 4 and history2[:2] == history


def test_bad_input_is_refused(dm):
    with pytest.raises(ValueError, match="image"):
        dm.respond(None, "Q", None)
    with pytest.raises(ValueError, match="question"):
        dm.respond(_image(), "   ", None)


def test_history_pairs_skips_non_text_and_unanswered():
    msgs = [{"role": "user", "content": ("img.png",)}, {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert history_pairs(msgs) == [("a", "b")]


def test_self_questioning_switch_answers(dm):
    reply, history = dm.respond(_image(), "What color?", None, sq=True, n_shot=1, max_new_tokens=3, max_question_tokens=3)
    assert isinstance(reply, str) and history[-1]["content"] == reply


def test_demo_binds_localhost_by_default():
    cfg = compose("vlrepro.sophon.configs", "demo", [])
    assert cfg.host == "127.0.0.1" and cfg.share is False


def test_demo_takes_llava_host_and_port_flags():
    from vlrepro.shared.paper_cli import parse_verb_args
    from vlrepro.sophon.cli import VERBS

    demo = next(v for v in VERBS if v.name == "demo")
    overrides, _ = parse_verb_args(["--host", "0.0.0.0", "--port", "7861"], demo.flags)
    cfg = compose("vlrepro.sophon.configs", "demo", overrides)
    assert (cfg.host, cfg.port) == ("0.0.0.0", 7861)
