"""``generate`` on mini COCO with a tiny OpenFlamingo: two shards, killed in the middle of an anchor,
resumed; the merged D_M must be byte-identical to an uninterrupted run, with no anchor done twice."""

from __future__ import annotations

import json

import pytest
import vlrepro.leverlm.generate as gen
from vlrepro.shared.paper_cli import compose


class Killed(BaseException):
    """Stands in for SIGKILL/KeyboardInterrupt: not an Exception, so nothing may swallow it."""


def _cfg(out, mini_coco, lvlm_dir):
    return compose("vlrepro.leverlm.configs", "generate", [
        "infer_model=tiny_flamingo", f"infer_model.model_path={lvlm_dir}", f"dataset.coco_path={mini_coco}", f"out_dir={out}",
        "sampler_num=4", "cand_num=4", "beam_size=2", "few_shot_num=2", "batch_size=8", "num_procs=2", "seed=3"])


def test_killed_and_resumed_run_writes_what_an_uninterrupted_run_writes(tmp_path, monkeypatch, mini_coco, lvlms, tiny_lvlm_dirs):
    lvlm = lvlms["flamingo"]
    ref = gen.run_generate(_cfg(tmp_path / "a", mini_coco, tiny_lvlm_dirs["flamingo"]), lvlm=lvlm)
    doc = json.loads(ref.read_text())
    assert len(doc) == 4
    for a, v in doc.items():  # the original layout
        assert len(v["id_list"]) == 2 and all(len(s) == 3 and s[-1] == int(a) for s in v["id_list"])
        assert all(-1 < s < 1 for s in v["score_list"])

    real = gen.make_scorer
    calls = {"n": 0}
    anchors_scored = []

    def dying_scorer(*args, **kw):
        fn = real(*args, **kw)

        def score(seq, cands, order):
            calls["n"] += 1
            if calls["n"] == 5:  # 3 scorer calls per anchor (1 beam, then 2): dies in anchor 2's second step
                raise Killed
            if len(seq) == 1:
                anchors_scored.append(seq[0])
            return fn(seq, cands, order)
        return score

    cfg = _cfg(tmp_path / "b", mini_coco, tiny_lvlm_dirs["flamingo"])
    monkeypatch.setattr(gen, "make_scorer", dying_scorer)
    with pytest.raises(Killed):
        gen.run_generate(cfg, lvlm=lvlm)
    shards = sorted((tmp_path / "b" / "generated_data" / "sub_proc_data").iterdir())
    assert len(shards) == 1 and len(json.loads(shards[0].read_text())) == 1  # anchor 1 saved, anchor 2 lost mid-way
    saved = json.loads(shards[0].read_text())
    assert saved == {k: doc[k] for k in saved}
    assert not (tmp_path / "b" / "generated_data" / ref.name).exists()  # nothing half-merged

    anchors_scored.clear()
    out = gen.run_generate(cfg, lvlm=lvlm)  # resume
    assert out.name == ref.name and out.read_bytes() == ref.read_bytes()
    assert sorted(anchors_scored) == sorted(int(a) for a in doc if a not in saved)  # no anchor lost or done twice
    # a third run has nothing left to do and rewrites the same file
    anchors_scored.clear()
    assert gen.run_generate(cfg, lvlm=lvlm).read_bytes() == ref.read_bytes() and anchors_scored == []


def test_max_anchors_per_run_stops_and_resumes(tmp_path, mini_coco, lvlms, tiny_lvlm_dirs):
    cfg = _cfg(tmp_path, mini_coco, tiny_lvlm_dirs["flamingo"])
    cfg.num_procs = 1
    cfg.max_anchors_per_run = 3
    part = gen.run_generate(cfg, lvlm=lvlms["flamingo"])
    assert "sub_proc_data" in str(part) and len(json.loads(part.read_text())) == 3
    cfg.max_anchors_per_run = None
    full = gen.run_generate(cfg, lvlm=lvlms["flamingo"])
    assert len(json.loads(full.read_text())) == 4 and full.parent.name == "generated_data"


def test_shard_bounds_match_the_original():
    assert gen.shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert gen.shard_bounds(4, 1) == [(0, 4)]
