"""Every shipped Hydra config composes (all groups × all three entry configs), the paper-era
defaults hold, the seed scripts' settings have our equivalents, and the original's config defects
(spec §8) are gone."""

from __future__ import annotations

from importlib.resources import files

import pytest
from omegaconf import OmegaConf
from vlrepro.shared.errors import VlreproError
from vlrepro.shared.paper_cli import compose

CONFIGS = "vlrepro.leverlm.configs"
ROOT = files(CONFIGS)
GROUPS = {g: sorted(p.name[:-5] for p in ROOT.joinpath(g).iterdir() if p.name.endswith(".yaml"))
          for g in ("infer_model", "dataset", "task", "sampler", "train")}
ENTRY_GROUPS = {"generate": ("infer_model", "dataset", "task", "sampler"),
                "train": ("infer_model", "dataset", "task", "sampler", "train"),
                "eval": ("infer_model", "dataset", "task", "train")}


def _resolve(cfg):
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


@pytest.mark.parametrize("entry,group,option", [(e, g, o) for e, gs in ENTRY_GROUPS.items() for g in gs for o in GROUPS[g]])
def test_every_config_composes(entry, group, option):
    cfg = compose(CONFIGS, entry, [f"{group}={option}"])
    out = _resolve(cfg)
    assert out[group] is not None and cfg[group] is not None
    if group == "sampler":
        assert out["sampler"]["candidate_num"] == 64 and out["sampler"]["clip_name"] == out["clip_name"]
    if group == "train":
        assert out["train"]["name"] == option and out["train"]["lever_lm"]["n_layer"] == 2


def test_groups_cover_the_seed_options():
    assert {"flamingo_3B", "flamingo_9B", "flamingo_9B_v1", "idefics_9B"} <= set(GROUPS["infer_model"])
    assert {"coco2014", "coco2017", "vqav2_local", "vqav2_online", "vqav2_local_sub"} <= set(GROUPS["dataset"])
    assert {"rand_sampler", "img_sim_sampler", "text_sim_sampler", "mix_sampler"} == set(GROUPS["sampler"])
    assert {"query_img_icd_idx", "query_img_icd_img_text", "query_img_icd_img", "query_img_icd_text",
            "query_img_text_icd_img_text"} <= set(GROUPS["train"])
    assert compose(CONFIGS, "smoke", []).family in ("idefics", "flamingo")


def test_paper_era_defaults():
    g = compose(CONFIGS, "generate", [])
    assert (g.beam_size, g.few_shot_num, g.batch_size, g.sample_num, g.cand_num, g.construct_order, g.scorer) == (5, 2, 32, 5000, 64, "left", "infoscore")
    assert (g.infer_model.name, g.dataset.name, g.task.name, g.sampler.sampler_name) == ("OpenFlamingo-9B-vitl-mpt7b", "coco2017", "caption", "RandSampler")
    t = compose(CONFIGS, "train", [])
    assert (t.lr, t.weight_decay, t.warmup_ratio, t.batch_size, t.trainer_args.max_epochs, t.train_ratio, t.seed) == (1e-4, 1e-3, 0.05, 64, 20, 0.9, 42)
    assert (t.train.lever_lm.n_embd, t.train.lever_lm.n_head, t.train.lever_lm.n_layer) == (512, 8, 2)
    e = compose(CONFIGS, "eval", [])
    assert list(e.shot_num_list) == [1, 2, 3, 4, 6, 8] and e.default_cpk_key == "last" and e.lever_lm_bs == 20
    assert e.mmtopk_clip_name == "openai/clip-vit-base-patch32" and e.mmtopk_reversed_order is True and e.inference_bs == 4
    cap, vqa = compose(CONFIGS, "eval", ["task=caption"]).task, compose(CONFIGS, "eval", ["task=vqa"]).task
    assert (cap.gen_args.max_new_tokens, vqa.gen_args.max_new_tokens, cap.gen_args.num_beams, cap.gen_args.length_penalty) == (20, 5, 3, 0.0)


def test_seed_script_settings_compose():
    """The seed scripts' positional arguments, as our overrides (README table)."""
    from vlrepro.leverlm.generate import dm_name

    g = compose(CONFIGS, "generate", ["task=vqa", "dataset=vqav2_local", "gpu_ids=[0,1,2,3]", "device=cuda"])
    assert list(g.gpu_ids) == [0, 1, 2, 3] and g.sampler_num == g.sample_num == 5000
    assert dm_name(g) == ("vqa-vqav2_local-OpenFlamingo-9B-vitl-mpt7b-RandSampler-scorer:infoscore-construct_order:left"
                          "-beam_size:5-few_shot:2-candidate_num:64-sample_num:5000")
    # the README's sampler_num override reaches the code's sample_num (and the file name)
    assert compose(CONFIGS, "generate", ["sampler_num=1000"]).sample_num == 1000
    t = compose(CONFIGS, "train", ["task=caption", "dataset=coco2017", "trainer_args.devices=1", "train=query_img_icd_img_text",
                                   "train.lever_lm.norm=false", "train.lever_lm.adapter=true"])
    # the train D_M name equals the generate name (the seed script's hard-coded name lacked scorer/construct_order)
    assert dm_name(t) == dm_name(compose(CONFIGS, "generate", ["task=caption", "dataset=coco2017"]))
    assert t.ex_name == "main_caption_query_img_icd_img_text" and t.trainer_args.devices == 1
    e = compose(CONFIGS, "eval", ["task=vqa", "dataset=vqav2_local_sub", "train=query_img_text_icd_img_text", "test_lever_lm=true", "inference_bs=4"])
    assert e.dataset.val_subset_num == 10000 and e.test_lever_lm is True


def test_original_config_defects_are_fixed():
    # img_sim_sampler referenced undefined ${candidate_set_num}/${clip_model_name}: ours resolves
    s = _resolve(compose(CONFIGS, "generate", ["sampler=img_sim_sampler", "cand_num=16", "clip_name=x"]))["sampler"]
    assert (s["candidate_num"], s["clip_name"]) == (16, "x")
    # flamingo_3B: PR #1's cross_attn_every_n_layers fix
    assert compose(CONFIGS, "generate", ["infer_model=flamingo_3B"]).infer_model.cross_attn_every_n_layers == 1
    # the seed train script's nonexistent keys are rejected with a clear message (use trainer_args.max_epochs)
    with pytest.raises(VlreproError, match="epochs"):
        compose(CONFIGS, "train", ["epochs=20"])
    # vqav2_online (a loading-script hub dataset) fails with a one-line error naming the fix
    from vlrepro.leverlm.data import load_rows

    with pytest.raises(VlreproError, match="vqav2_local"):
        load_rows(compose(CONFIGS, "eval", ["dataset=vqav2_online"]).dataset, "train")


def test_sampler_caches_do_not_collide(tmp_path, train_rows, mini_coco):
    """The original's candidate-cache name dropped the sampler; ours carries it."""
    from vlrepro.leverlm.generate import _candidates

    base = [f"out_dir={tmp_path}", "cand_num=4", "sampler_num=3", f"dataset.coco_path={mini_coco}"]
    a = _candidates(compose(CONFIGS, "generate", base + ["sampler=rand_sampler"]), train_rows, [0, 1, 2])
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(names) == 1 and "RandSampler" in names[0] and sorted(a) == [0, 1, 2]
