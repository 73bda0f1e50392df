"""The Lever-LM model (spec §1b/§1c): embedding injection, greedy decoding without repeats (both ban
modes), parameter count, D_M split, and training lowering the loss."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from vlrepro.leverlm.method import TRAIN_OPTIONS, LeverLM, lever_lm_param_count
from vlrepro.leverlm.train import split_samples

N = 10


def tiny(option="query_img_icd_img_text", **kw):
    torch.manual_seed(0)
    return LeverLM(N, train_option=option, n_embd=32, n_head=2, n_layer=2, n_positions=16, feature_dim=32, **kw).eval()


def test_param_count_matches_the_paper_67m():
    assert lever_lm_param_count(118_287) == 67_394_560
    assert lever_lm_param_count(443_757) == 234_035_200 and lever_lm_param_count(82_783) == 49_216_512
    m = LeverLM(50, train_option="query_img_icd_idx", n_embd=32, n_head=2, n_layer=2, n_positions=16, feature_dim=32)
    assert sum(p.numel() for p in m.lm.parameters()) == lever_lm_param_count(50, 32, 2, 16)
    ad = LeverLM(50, train_option="query_img_icd_img_text", adapter=True)
    assert sum(p.numel() for p in ad.adapters["image"].parameters()) == 2_099_712


def test_features_are_added_at_query_and_icd_positions_only():
    m = tiny("query_img_icd_img_text")
    ids = m.training_ids(torch.tensor([[3, 7]]))
    assert ids.tolist() == [[N + 1, N + 2, 3, 7, N]]  # [BOS, QUERY, icd1, icd2, EOS]
    qf = {"image": torch.randn(1, 32)}
    icd = {"image": torch.randn(1, 2, 32), "text": torch.randn(1, 2, 32)}
    diff = m.embed(ids, qf, icd) - m.lm.transformer.wte(ids)
    assert torch.allclose(diff[0, 1], qf["image"][0]) and torch.allclose(diff[0, 2:4], icd["image"][0] + icd["text"][0])
    assert diff[0, 0].abs().max() == 0 and diff[0, 4].abs().max() == 0
    out = m(ids, qf, icd, labels=ids)
    assert out.logits.shape == (1, 5, N + 3) and torch.isfinite(out.loss)
    normed = tiny("query_img_icd_idx", norm=True)
    d2 = normed.embed(ids, qf, icd) - normed.lm.transformer.wte(ids)
    assert torch.allclose(d2[0, 1].norm(), torch.tensor(1.0)) and d2[0, 2:].abs().max() == 0  # idx option: no ICD features


def _scripted(model, prefs):
    """Replace the forward with fixed next-token logits: prefs[row] lists ids best first; specials beat everything."""
    def forward(ids, query_feats, icd_feats=None, **_):
        logits = torch.full((ids.shape[0], ids.shape[1], N + 3), -50.0)
        logits[:, :, N:] = 100.0  # EOS/BOS/QUERY would win without the special-token ban
        for r, pref in enumerate(prefs):
            for rank, i in enumerate(pref):
                logits[r, :, i] = 50.0 - rank
        return SimpleNamespace(logits=logits)
    model.forward = forward
    return model


def test_greedy_decoding_bans_repeats_per_row_and_batch_wide():
    prefs = [[3, 5, 7, 1, 2], [5, 3, 8, 1, 2]]
    qf = {"image": torch.zeros(2, 32)}
    per_row = _scripted(tiny(), prefs).generate(qf, 3, lambda c: {}, ban="per_row")
    assert per_row.tolist() == [[3, 5, 7], [5, 3, 8]]
    batch = _scripted(tiny(), prefs).generate(qf, 3, lambda c: {}, ban="batch_earlier_steps")
    # step 1 picks 3 | 5; both are then banned in every row (the original's batch-wide ban)
    assert batch.tolist() == [[3, 7, 1], [5, 8, 1]]


@pytest.mark.parametrize("option", sorted(TRAIN_OPTIONS))
def test_generated_configurations_never_repeat(option):
    m = tiny(option)
    feats = {"image": torch.randn(N, 32), "text": torch.randn(N, 32)}
    q_mod, i_mod = TRAIN_OPTIONS[option]
    seen = []

    def icd_features(chosen):
        seen.append(chosen.clone())
        return {k: feats[k][chosen] for k in i_mod}

    qf = {k: torch.randn(6, 32) for k in q_mod}
    for ban in ("per_row", "batch_earlier_steps"):
        # 6 rows x 4 shots > N = 10: the batch-wide ban runs out of ids and must fall back per row
        out = m.generate(qf, 4, icd_features, ban=ban)
        assert out.shape == (6, 4) and int(out.max()) < N
        assert all(len(set(r)) == 4 for r in out.tolist())
    if i_mod:  # chosen ICDs are re-encoded each step: prefixes of the final answer
        assert [s.shape[1] for s in seen[:3]] == [1, 2, 3]


def test_split_samples_by_sorted_anchor_with_threshold():
    dm = {a: {"id_list": [[a + 1, a + 2, a], [a + 3, a + 4, a]], "score_list": [0.2, -0.1 if a % 2 else 0.0]} for a in range(20, 0, -1)}
    train, val = split_samples(dm, 0.9, 0.0, reverse_seq=False)
    assert {q for q, _ in train} == set(range(1, 19)) and {q for q, _ in val} == {19, 20}
    assert (19, [20, 21]) in val and (20, [23, 24]) in val and (19, [22, 23]) not in val  # -0.1 < 0 dropped, 0.0 kept
    assert len(train) == 18 + 9
    rev, _ = split_samples(dm, 0.9, 0.0, reverse_seq=True)
    assert rev[0] == (1, [3, 2])
    dm[1]["score_list"] = [float("nan"), 0.5]
    assert all(q != 1 or icds == [4, 5] for q, icds in split_samples(dm, 0.9, 0.0, False)[0])


def test_training_lowers_the_loss_and_checkpoints_round_trip(mini_coco, train_rows, tiny_clip, tmp_path):
    """Lever-LM learns a D_M whose ICDs are a function of the query; the checkpoint reloads exactly."""
    from vlrepro.leverlm.train import find_checkpoint, load_lever_lm, run_train
    from vlrepro.shared.paper_cli import compose

    n = len(train_rows)
    dm = {a: {"id_list": [[(a + 1) % n, (a + 2) % n, a], [(a + 3) % n, (a + 1) % n, a]], "score_list": [0.3, 0.1]} for a in range(n)}
    (tmp_path / "dm.json").write_text(json.dumps({str(k): v for k, v in dm.items()}))
    over = ["dataset=coco2017", f"dataset.coco_path={mini_coco}", f"out_dir={tmp_path}", f"clip_name={tiny_clip}",
            f"data_files={tmp_path / 'dm.json'}", "train=query_img_icd_img_text", "train.lever_lm.n_embd=32",
            "train.lever_lm.n_head=2", "train.lever_lm.n_positions=16", "train.lever_lm.feature_dim=32", "batch_size=16",
            "lr=3e-3", "trainer_args.max_epochs=15", "trainer_args.enable_progress_bar=false", "trainer_args.val_check_interval=1.0",
            "ex_name=t"]
    summary = run_train(compose("vlrepro.leverlm.configs", "train", over))
    assert summary["train_samples"] == 2 * int(n * 0.9) and summary["val_samples"] == 2 * (n - int(n * 0.9))
    assert summary["train_loss_last"] < 0.7 * summary["train_loss_first"]
    cfg = compose("vlrepro.leverlm.configs", "eval", [f"out_dir={tmp_path}", "task=caption", "ex_name=t"])
    for key in ("last", "min_vl", "min_tl"):
        cfg.default_cpk_key = key
        assert find_checkpoint(cfg).name.startswith(key)
    model, conf = load_lever_lm(find_checkpoint(cfg))
    assert conf["model"]["index_ds_size"] == n and model.train_option == "query_img_icd_img_text"
    cfg.default_cpk_key = "best"
    from vlrepro.shared.errors import VlreproError

    with pytest.raises(VlreproError, match="default_cpk_key"):
        find_checkpoint(cfg)
