"""ICD retrieval: constructed examples with known neighbours, ordering, seeding, the feature cache."""

from __future__ import annotations

import pytest
import torch
from vlrepro.shared.retrieval import (
    clip_features,
    random_demonstrations,
    retrieve_demonstrations,
    topk_similar,
)

# pool of 4 unit vectors along/near the axes; query 0 is closest to 2, then 1
POOL = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
QUERY = torch.tensor([[0.0, 2.0, 0.5], [3.0, 0.0, 0.0]])


def test_topk_order_and_exclusion():
    assert topk_similar(QUERY, POOL, 2, order="most_similar_first") == [[2, 1], [0, 1]]
    assert topk_similar(QUERY, POOL, 2) == [[1, 2], [1, 0]]  # most similar rightmost (default)
    assert topk_similar(QUERY, POOL, 2, order="most_similar_first", exclude=[2, None]) == [[1, 3], [0, 1]]
    with pytest.raises(ValueError):
        topk_similar(QUERY, POOL, 5)


def test_ties_break_by_lower_index():
    pool = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert topk_similar(torch.tensor([[1.0, 0.0]]), pool, 2, order="most_similar_first") == [[0, 1]]


def test_random_is_seeded_distinct_and_excludes_self():
    a = random_demonstrations(5, 6, 3, seed=7, exclude_self=True)
    assert a == random_demonstrations(5, 6, 3, seed=7, exclude_self=True)
    assert a != random_demonstrations(5, 6, 3, seed=8, exclude_self=True)
    for q, row in enumerate(a):
        assert len(set(row)) == 3 and q not in row and all(0 <= i < 6 for i in row)


def test_modes_pick_the_right_features():
    img_pool, txt_pool = POOL, POOL.flip(0)  # text pool is the image pool reversed
    kw = dict(n_queries=2, pool_size=4, query_image=QUERY, query_text=QUERY, pool_image=img_pool, pool_text=txt_pool,
              order="most_similar_first")
    assert retrieve_demonstrations("i2i", 1, **kw) == [[2], [0]]
    assert retrieve_demonstrations("t2t", 1, **kw) == [[1], [3]]
    assert retrieve_demonstrations("i2t", 1, **kw) == [[1], [3]]
    with pytest.raises(ValueError, match="unknown retrieval mode"):
        retrieve_demonstrations("x2y", 1, **kw)


def test_clip_features_cache_computes_once(tmp_path, monkeypatch):
    import transformers
    from PIL import Image
    from vlrepro.shared.testing import tiny_clip_model

    model_dir = tiny_clip_model(tmp_path / "clip")
    imgs = [Image.new("RGB", (40, 40), c) for c in ("red", "blue", "red")]
    f1 = clip_features(str(model_dir), imgs, kind="image", keys=["r1", "b", "r2"], cache_dir=tmp_path / "cache")
    assert f1.shape == (3, 32)
    torch.testing.assert_close(f1.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(f1[0], f1[2])  # identical pictures, identical features
    assert topk_similar(f1[:1], f1[1:], 1, order="most_similar_first") == [[1]]

    def boom(*a, **k):
        raise AssertionError("CLIP should not run again: the cache holds these features")

    monkeypatch.setattr(transformers.CLIPModel, "from_pretrained", boom)
    f2 = clip_features(str(model_dir), imgs, kind="image", keys=["r1", "b", "r2"], cache_dir=tmp_path / "cache")
    assert torch.equal(f1, f2)


def test_clip_text_features_and_offline_error(tmp_path):
    from vlrepro.shared.errors import VlreproError
    from vlrepro.shared.testing import tiny_clip_model

    model_dir = tiny_clip_model(tmp_path / "clip")
    f = clip_features(str(model_dir), ["a red square", "a blue circle"], kind="text")
    assert f.shape == (2, 32) and not torch.allclose(f[0], f[1])
    with pytest.raises(VlreproError, match="cannot load CLIP model"):
        clip_features(str(tmp_path / "nope"), ["x"], kind="text")
