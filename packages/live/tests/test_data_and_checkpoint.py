"""Data sampling (determinism, no self-demonstration), eval sets, and the ICV checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vlrepro.live.checkpoint import load_icv, save_icv
from vlrepro.live.data import (
    ICVTrainDataset,
    draw_demonstrations,
    load_eval_records,
    load_split,
    select_query_set,
)
from vlrepro.live.method import GlobalICVEncoder
from vlrepro.live.prompts import VQAPrompt
from vlrepro.shared.errors import MalformedFileError, MissingFileError


def test_query_set_is_seeded_without_replacement():
    a = select_query_set(100, 30, 426)
    assert len(set(a.tolist())) == 30 and np.array_equal(a, select_query_set(100, 30, 426))
    assert not np.array_equal(a, select_query_set(100, 30, 1))
    assert np.array_equal(select_query_set(10, 8000, 0), np.arange(10))


def test_demonstrations_with_replacement_never_the_query():
    rng = np.random.default_rng(0)
    pool = [0, 1, 2]
    for _ in range(200):
        d = draw_demonstrations(rng, pool, 1, 4)
        assert len(d) == 4 and 1 not in d
    # with replacement: repeats happen
    assert any(len(set(draw_demonstrations(rng, pool, 1, 4))) < 4 for _ in range(20))


def _ds_cfg(root, name="vqav2", **kw):
    sub = "vqav2" if name == "vqav2" else "okvqa"
    cfg = {"name": name, "root_dir": str(root / sub), "coco_root": str(root / "coco"), "val_ques_file": None,
           "val_ann_file": None, "val_subset_size": None, "val_subset_seed": 0, "test_num": -1}
    cfg.update(kw)
    return cfg


def test_train_items_are_deterministic_per_epoch(mini_root):
    records = load_split(_ds_cfg(mini_root), "train")
    ds = ICVTrainDataset(records, few_shot_num=3, max_train_size=8, seed=426, prompt=VQAPrompt())
    first = [ds.demonstration_indices(i) for i in range(len(ds))]
    assert first == [ds.demonstration_indices(i) for i in range(len(ds))]
    ds.set_epoch(1)
    assert first != [ds.demonstration_indices(i) for i in range(len(ds))]
    item = ds[0]
    assert len(item.ice) == 1 + 2 * 3 and item.teacher == item.ice + item.student
    assert item.student[1].endswith(".") and item.query_x[1].endswith("Short answer:")


def test_eval_sets_full_subset_and_missing(mini_root, tmp_path):
    recs, anns, split = load_eval_records(_ds_cfg(mini_root))
    assert split == "val" and len(recs) == len(anns) == 6
    sub, _, split2 = load_eval_records(_ds_cfg(mini_root, val_subset_size=4, val_subset_seed=3))
    assert len(sub) == 4 and "seeded subset" in split2
    assert [r.question_id for r in sub] == [r.question_id for r in load_eval_records(_ds_cfg(mini_root, val_subset_size=4, val_subset_seed=3))[0]]
    ok, _, _ = load_eval_records(_ds_cfg(mini_root, "ok_vqa"))
    assert len(ok) == 6
    with pytest.raises(MissingFileError, match=str(tmp_path)):
        load_eval_records(_ds_cfg(tmp_path))


def test_checkpoint_round_trip_gives_identical_predictions(adapters, red_image, tmp_path):
    from vlrepro.live.evaluate import generate_predictions
    from vlrepro.shared.data import VQARecord

    a = adapters["idefics"]
    torch.manual_seed(3)
    enc = GlobalICVEncoder(a.num_layers, a.hidden_size, use_sigmoid=False, alpha_init_value=0.8, icv_init_std=0.5)
    names = a.layer_names()
    path = save_icv(tmp_path / "icv_cpk.safetensors", enc, layer_names=names, config={"run_name": "x"})
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert sorted(f.keys()) == ["icv_encoder.alpha", "icv_encoder.icv"]
    loaded, loaded_names, cfg = load_icv(path)
    assert loaded_names == names and cfg == {"run_name": "x"} and loaded.use_sigmoid is False
    assert torch.equal(loaded.icv, enc.icv) and torch.equal(loaded.alpha, enc.alpha)

    class Rec:  # minimal stand-in for VQARecord with an in-memory image
        def __init__(self, qid):
            self.question_id = qid

        def load_image(self):
            return red_image

    recs = [Rec(1), Rec(2)]
    P = VQAPrompt()
    qs = {0: "What color is the square?", 1: "How many squares are there?"}
    fn = lambda i, img: P.inference_prompt(img, qs[i])  # noqa: E731
    gen = {"max_new_tokens": 5, "num_beams": 3}
    before = generate_predictions(a, recs, fn, bs=1, generation=gen, encoder=enc, layer_names=names, progress=False)
    after = generate_predictions(a, recs, fn, bs=1, generation=gen, encoder=loaded, layer_names=loaded_names, progress=False)
    assert before == after
    assert VQARecord  # imported type stays available for readers


def test_bad_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(MissingFileError, match="ICV checkpoint not found"):
        load_icv(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(MalformedFileError):
        load_icv(bad)
