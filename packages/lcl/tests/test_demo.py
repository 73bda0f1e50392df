"""The demo's answer functions with the tiny model (headless), the app builds, and quantisation errors are clear."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from PIL import Image

from vlrepro.lcl.demo import DemoModel, build_app, load_demo_model
from vlrepro.shared.errors import VlreproError


def _img(colour):
    return Image.new("RGB", (40, 30), colour)


def test_demo_answers_with_tiny_model(tiny):
    model, tok, proc = tiny
    dm = DemoModel(model, tok, proc, max_new_tokens=6)
    a = dm.answer_lcl([_img("red"), None], "cactihog", [_img("blue"), _img("navy")], "hedgehog", _img("red"), "What is the name of this?")
    b = dm.answer_lcl([_img("red"), None], "cactihog", [_img("blue"), _img("navy")], "hedgehog", _img("red"), "What is the name of this?")
    assert isinstance(a, str) and a == b  # greedy: same inputs, same answer
    assert isinstance(dm.answer_vqa(_img("green"), "What colour is it?"), str)
    with pytest.raises(ValueError):
        dm.answer_lcl([None], "x", [_img("blue")], "y", _img("red"), "q")


def test_app_builds(tiny):
    import gradio as gr

    model, tok, proc = tiny
    app = build_app(DemoModel(model, tok, proc, max_new_tokens=4))
    assert isinstance(app, gr.Blocks)


def test_8bit_without_cuda_is_a_clear_error():
    cfg = OmegaConf.create({"device": "cpu", "load_in_8bit": True, "load_in_4bit": False, "tiny": True,
                            "model_path": "x", "max_new_tokens": 4})
    with pytest.raises(VlreproError, match="needs a CUDA GPU"):
        load_demo_model(cfg)
