"""Shared fixtures: one tiny tokenizer and tiny SQ-LLaVA per session (built from config, no downloads)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def golden() -> dict:
    return json.loads((DATA / "golden_sophon.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    from vlrepro.shared.testing import tiny_llama_tokenizer

    return tiny_llama_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    import torch
    from vlrepro.sophon.model import SqLlavaForCausalLM, tiny_sq_llava_config

    torch.manual_seed(0)
    return SqLlavaForCausalLM(tiny_sq_llava_config(len(tokenizer))).eval()
