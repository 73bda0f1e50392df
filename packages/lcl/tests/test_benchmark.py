"""The benchmark script: the real Shikra-7B architecture has the release's parameter count; episode layout; JSON line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from vlrepro.lcl.method import check_image_blocks

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "episode_cost.py"


def _bench():
    spec = importlib.util.spec_from_file_location("lcl_episode_cost", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_real_architecture_matches_released_param_count():
    b = _bench()
    cfg = b.shikra_config(True)
    assert cfg.image_token_len == 256 and cfg.mm_hidden_size == 1024
    counts = b.count_params(cfg)  # built on the meta device
    # spec §1: 6,742,638,592 = LLaMA-7B 6,738,415,616 + 3 x 4096 x 2 token rows + 1024 x 4096 + 4096 projector
    assert counts["llm_plus_projector"] == 6_742_638_592 == b.RELEASED_PARAMS
    assert counts["projector"] == 1024 * 4096 + 4096
    assert counts["vision_tower"] == 303_179_776  # CLIP ViT-L/14 vision tower (no projection head)


def test_episode_layout_and_labels():
    b = _bench()
    cfg = b.shikra_config(False)
    ids, labels = b.episode_ids(cfg, 3, train=True, generator=torch.Generator().manual_seed(0))
    ids, labels = ids[0].tolist(), labels[0].tolist()
    check_image_blocks(ids, 7, cfg.image_token_len, {"<im_patch>": cfg.im_patch_token, "<im_start>": cfg.im_start_token,
                                                      "<im_end>": cfg.im_end_token})
    assert ids.count(cfg.bos_token_id) == 7  # one BOS per round
    assert ids.count(cfg.eos_token_id) == 2  # after round 1 and after the answer
    sup = [i for i, lab in enumerate(labels) if lab != -100]
    assert sup == list(range(len(ids) - b.TEXT_TOKENS["answer"], len(ids))) and labels[-1] == cfg.eos_token_id


def test_benchmark_prints_one_json_line(capsys):
    b = _bench()
    assert b.main(["--shots", "1", "--repeats", "1", "--new-tokens", "3", "--no-train"]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    (row,) = out["results"]
    assert row["paper_n_shot"] == 2 and row["images"] == 3 and row["new_tokens"] == 3
    assert row["prefill_ms"] > 0 and out["real_architecture_params"]["matches_release"] is True
