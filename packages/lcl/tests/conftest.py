"""Shared fixtures: one tiny tokenizer/model/mini data set per session (built from config, never downloaded)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

GOLDEN = json.loads((Path(__file__).parent / "golden_lcl.json").read_text())


@pytest.fixture(scope="session")
def golden() -> dict:
    return GOLDEN


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny LCL checkpoint folder (model safetensors + tokenizer with image tokens + CLIP processor)."""
    from vlrepro.lcl.smoke import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-lcl"))


@pytest.fixture(scope="session")
def tiny(tiny_ckpt):
    """(model, tokenizer, processor) loaded back through from_pretrained."""
    from vlrepro.lcl.model import load_lcl

    return load_lcl(tiny_ckpt)


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory) -> Path:
    from vlrepro.lcl.data import make_mini_data

    return make_mini_data(tmp_path_factory.mktemp("mini-data"))
