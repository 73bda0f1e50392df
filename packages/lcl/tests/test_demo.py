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


def test_page_renders_in_headless_chromium(tiny, monkeypatch):
    """Serve the app on 127.0.0.1 and let headless Chromium run its JavaScript: both tabs and the VQA widgets render."""
    import re
    import shutil
    import socket
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here (apt-get install -y chromium)")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    model, tok, proc = tiny
    app = build_app(DemoModel(model, tok, proc, max_new_tokens=4))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False)
    try:
        out = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                              "--virtual-time-budget=20000", "--dump-dom", f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True, timeout=180)
    finally:
        app.close()
    assert out.returncode == 0, out.stderr[-500:]
    # drop <script> bodies (the served config names every label): what is left was rendered by the page's JS
    dom = re.sub(r"<script\b.*?</script>", "", out.stdout, flags=re.S)
    tabs = re.findall(r'role="tab"[^>]*>\s*(?:<[^>]*>\s*)*([^<]+?)\s*<', dom)
    assert tabs == ["VQA", "LCL"]
    assert "VQA Chatbot" in dom and 'data-testid="image"' in dom and "<textarea" in dom
