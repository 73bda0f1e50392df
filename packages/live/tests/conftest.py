"""Shared fixtures: tiny IDEFICS / Idefics2 built once per session, saved and loaded via from_pretrained."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    from vlrepro.live.tiny import save_tiny_lmm

    root = tmp_path_factory.mktemp("tiny-lmms")
    return {fam: save_tiny_lmm(fam, root / fam, seed=0) for fam in ("idefics", "idefics2")}


@pytest.fixture(scope="session")
def adapters(tiny_dirs):
    from transformers.utils import logging as hf_logging
    from vlrepro.live.models import load_lmm

    hf_logging.set_verbosity_error()
    return {fam: load_lmm(fam, path) for fam, path in tiny_dirs.items()}


@pytest.fixture(scope="session")
def red_image():
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (48, 48), (255, 255, 255))
    ImageDraw.Draw(img).rectangle([8, 8, 36, 36], fill=(220, 20, 20))
    return img


@pytest.fixture(scope="session")
def mini_root(tmp_path_factory):
    from vlrepro.shared.data import make_mini

    root = tmp_path_factory.mktemp("mini")
    make_mini("vqav2", root, seed=0, n=12)
    make_mini("okvqa", root, seed=0, n=12)
    return root
