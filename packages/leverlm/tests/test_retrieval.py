"""Candidate samplers (spec §1a) and the ICL retrieval baselines RS / SIIR / SITR / STTR (spec §1c)
on constructed features whose neighbours are known by hand."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import vlrepro.leverlm.evaluate as ev
from vlrepro.leverlm.retrieval import (
    candidate_sets,
    rand_candidates,
    random_retrieval,
    sample_anchors,
    similarity_retrieval,
    topk_inner_product,
)
from vlrepro.shared.paper_cli import compose

# 5 supporting-set rows, 1 test query. First coordinate = similarity to the query image,
# second = similarity to the query text.
TRAIN_IMG = torch.tensor([[.1, 0], [.2, 0], [.9, 0], [.3, 0], [.5, 0]])
TRAIN_TXT = torch.tensor([[.2, .7], [.8, .1], [.1, 0], [.6, .2], [0, .5]])
QUERY_IMG = torch.tensor([[1.0, 0]])
QUERY_TXT = torch.tensor([[0, 1.0]])


def _rows():
    train = [{"idx": i, "image": f"train_img_{i}", "single_caption": f"train_cap_{i}"} for i in range(5)]
    test = [{"idx": 0, "image": "test_img_0", "single_caption": "test_cap_0", "image_id": 1, "captions": ["x"]}]
    return train, test


def _fake_clip(model, kind, values, **_):
    table = {"image": {**{f"train_img_{i}": TRAIN_IMG[i] for i in range(5)}, "test_img_0": QUERY_IMG[0]},
             "text": {**{f"train_cap_{i}": TRAIN_TXT[i] for i in range(5)}, "test_cap_0": QUERY_TXT[0]}}
    return torch.stack([table[kind][v] for v in values])


@pytest.mark.parametrize("reversed_order", [True, False])
def test_similarity_baselines_return_the_constructed_neighbours(monkeypatch, tmp_path, reversed_order):
    monkeypatch.setattr(ev, "clip_features", _fake_clip)
    cfg = compose("vlrepro.leverlm.configs", "eval", [f"out_dir={tmp_path}", "test_i2i=true", "test_i2t=true", "test_t2t=true",
                                                      "test_random=true", f"mmtopk_reversed_order={str(reversed_order).lower()}",
                                                      "shot_num_list=[2]"])
    train, test = _rows()
    got = {name: fn(2)[0] for name, fn in ev.retrievals(cfg, train, test, "cpu").items()}
    best_first = {"SIIR": [2, 4], "SITR": [1, 3], "STTR": [0, 4]}  # image->image, image->text, text->text
    for name, ids in best_first.items():
        assert got[name] == (ids[::-1] if reversed_order else ids), name  # reversed: most similar rightmost
    np.random.seed(42)
    assert got["RS"] == np.random.choice(5, 2, replace=False).tolist()


def test_random_retrieval_follows_the_seeded_numpy_stream():
    np.random.seed(42)
    want = [np.random.choice(100, 3, replace=False).tolist() for _ in range(4)]
    assert random_retrieval(4, 100, 3, seed=42) == want
    fixed = random_retrieval(4, 100, 3, seed=42, fixed=True)
    assert fixed == [want[0]] * 4
    assert all(len(set(r)) == 3 for r in random_retrieval(50, 10, 3))


def test_topk_matches_numpy_argsort_and_breaks_ties_by_index():
    g = torch.Generator().manual_seed(0)
    q, idx = torch.randn(7, 8, generator=g), torch.randn(40, 8, generator=g)
    want = np.argsort(-(q @ idx.T).numpy(), axis=1, kind="stable")[:, :5]
    assert topk_inner_product(q, idx, 5).tolist() == want.tolist()
    assert topk_inner_product(torch.ones(1, 2), torch.ones(4, 2), 3).tolist() == [[0, 1, 2]]
    assert similarity_retrieval(QUERY_IMG, TRAIN_IMG, 3, reversed_order=True) == [[3, 4, 2]]


def test_samplers_exclude_the_anchor():
    anchors = sample_anchors(30, 6, seed=1)
    assert anchors == sorted(random.Random(1).sample(range(30), 6)) and anchors == sample_anchors(30, 6, seed=1)
    rnd = candidate_sets("rand", anchors, 30, 8, seed=0)
    assert all(a not in c and len(set(c)) == 8 for a, c in rnd.items())
    assert rnd == candidate_sets("rand", anchors, 30, 8, seed=0)
    # features: row i is the unit vector at angle i degrees -> nearest neighbours are i±1, i±2, ...
    ang = torch.arange(30, dtype=torch.float64) * torch.pi / 180
    feats = torch.stack([ang.cos(), ang.sin()], 1).float()
    img = candidate_sets("img_sim", [10], 30, 4, seed=0, image_features=feats)
    assert sorted(img[10]) == [8, 9, 11, 12] and 10 not in img[10]
    dup = torch.cat([feats[:1], feats[:1], feats[2:]])  # rows 0 and 1 identical: the anchor is not always hit 1
    assert 1 not in candidate_sets("text_sim", [1], 30, 3, seed=0, text_features=dup)[1]
    mix = candidate_sets("mix", [10], 30, 8, seed=0, image_features=feats, text_features=feats.flip(1))
    assert len(mix[10]) == 8 and len(set(mix[10])) == 8 and 10 not in mix[10]
    with pytest.raises(Exception, match="candidate_num"):
        rand_candidates(0, 5, 5, random.Random(0))
