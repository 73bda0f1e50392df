"""Session fixtures: mini COCO 2017 (official layout), tiny random OpenFlamingo / IDEFICS / CLIP
built from configs, saved and reloaded through the real loading path (``load_lvlm``)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models: threads only add spin-wait on a shared 2-core machine


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mini_coco(tmp_path_factory):
    """Data root holding ``coco/mscoco2017`` (32 train / 16 val images); returns the ``coco_path``."""
    from vlrepro.shared.data import make_mini

    root = tmp_path_factory.mktemp("mini")
    make_mini("coco2017", root, seed=0)
    return root / "coco"


@pytest.fixture(scope="session")
def train_rows(mini_coco):
    from vlrepro.leverlm.data import caption_rows

    return caption_rows(2017, "train", mini_coco)


class _Lazy(dict):
    """family -> value, built on first use (a module that needs only OpenFlamingo never builds IDEFICS)."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, family):
        self[family] = value = self.make(family)
        return value


@pytest.fixture(scope="session")
def tiny_lvlm_dirs(tmp_path_factory):
    from transformers.utils import logging as hf_logging
    from vlrepro.leverlm.lvlm import build_tiny_flamingo, build_tiny_idefics

    hf_logging.set_verbosity_error()
    root = tmp_path_factory.mktemp("tiny-lvlm")
    build = {"flamingo": build_tiny_flamingo, "idefics": build_tiny_idefics}
    return _Lazy(lambda fam: build[fam](root / fam, seed=0))


@pytest.fixture(scope="session")
def lvlms(tiny_lvlm_dirs):
    from omegaconf import OmegaConf
    from vlrepro.leverlm.lvlm import load_lvlm

    return _Lazy(lambda fam: load_lvlm(OmegaConf.create({"family": fam, "model_path": str(tiny_lvlm_dirs[fam])})))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    from vlrepro.shared.testing import tiny_clip_model

    return tiny_clip_model(tmp_path_factory.mktemp("tiny-clip"), seed=0)
