"""Shared tiny fixtures: a Meta-format tiny LLaMA (tokenizer.model + params.json + consolidated.00.pth),
a tiny CLIP saved with save_pretrained, and the ADEM-VL model built from them through the real loaders."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from omegaconf import OmegaConf
from vlrepro.ademvl.build import adem_config, load_clip_vision
from vlrepro.ademvl.llama import load_llama
from vlrepro.ademvl.method import ADEMVL
from vlrepro.ademvl.smoke import write_tiny_weights

TINY = dict(tiny_dim=64, tiny_layers=2, tiny_heads=4, tiny_multiple_of=32, llm_model="tiny", seed=0, max_seq_len=192)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """``weights/`` with tokenizer.model, tiny/{params.json, consolidated.00.pth} and clip/."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    write_tiny_weights(root, OmegaConf.create(TINY))
    return root


def model_cfg(weights, **overrides):
    base = dict(device="cpu", dtype="fp32", llama_model_path=str(weights), llm_model="tiny", clip="tiny",
                clip_root=str(weights / "clip"), max_seq_len=192, hidden_proj=8, adapter_dim=4, alpha=0.1, beta=0.01,
                drop_ratio=0.1, down_sample_num=[16, 4], no_cls=False, cpu_load=False, gradient_checkpointing=False)
    base.update(overrides)
    return OmegaConf.create(base)


@pytest.fixture(scope="session")
def tiny_parts(tiny_weights):
    """(llama, tokenizer, CLIP vision transformer) loaded from the files: build fresh copies per test."""
    llama, tok = load_llama(tiny_weights, "tiny", max_seq_len=192)
    vision = load_clip_vision(model_cfg(tiny_weights), torch.float32, torch.device("cpu"))
    return llama, tok, vision


@pytest.fixture
def make_model(tiny_parts, tiny_weights):
    """Factory: a fresh ADEM-VL model (deep copies of the loaded LLaMA/CLIP) with config overrides."""
    import copy

    def build(seed: int = 0, **overrides) -> ADEMVL:
        llama, tok, vision = tiny_parts
        torch.manual_seed(seed)
        return ADEMVL(copy.deepcopy(llama), copy.deepcopy(vision), tok, adem_config(model_cfg(tiny_weights, **overrides)))

    return build


@pytest.fixture
def plain_llama(tiny_parts):
    import copy

    return copy.deepcopy(tiny_parts[0])


@pytest.fixture
def cfg_for(tiny_weights):
    """``cfg_for(**overrides)``: the model part of a config pointing at the tiny weights."""
    return lambda **kw: model_cfg(tiny_weights, **kw)
