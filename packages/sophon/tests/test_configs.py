"""Every shipped config composes; the presets carry the README / script hyperparameters (spec §3)."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest
from omegaconf import OmegaConf
from vlrepro.shared.errors import VlreproError
from vlrepro.shared.paper_cli import compose

CONFIGS = files("vlrepro.sophon.configs")
PRESETS = sorted(p.name[:-5] for p in CONFIGS.joinpath("experiment").iterdir() if p.name.endswith(".yaml"))


def test_presets_named_in_the_issue_exist():
    assert {"pretrain_7b", "finetune_lora_7b", "pretrain_13b", "finetune_lora_13b"} <= set(PRESETS)


@pytest.mark.parametrize("name", ["pretrain", "finetune", "train", "eval", "demo", "smoke"])
def test_verb_configs_compose(name):
    cfg = compose("vlrepro.sophon.configs", name, [])
    assert cfg.device == "cpu" and cfg.out_dir is None or "sophon" in str(cfg.out_dir)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("verb", ["pretrain", "finetune", "train"])
def test_presets_compose_under_every_training_verb(verb, preset):
    cfg = compose("vlrepro.sophon.configs", verb, [f"experiment={preset}"])
    size = preset.rsplit("_", 1)[-1]
    assert cfg.model_name_or_path == f"lmsys/vicuna-{size}-v1.5"
    assert cfg.vision_tower == "openai/clip-vit-large-patch14-336"
    assert cfg.mm_projector_type == "cluster" and cfg.num_centers == 256 and cfg.cluster_iters == 2
    assert cfg.mm_vision_select_layer == -2 and cfg.model_max_length == 2048 and cfg.weight_decay == 0
    assert cfg.bf16 and cfg.lr_scheduler_type == "cosine" and cfg.warmup_ratio == 0.03 and cfg.num_train_epochs == 1
    assert str(cfg.out_dir).endswith(f"sophon/{preset}")
    if preset.startswith("pretrain"):  # README table: 256 global (16/GPU), 1e-3, plain template, projector only
        assert (cfg.stage, cfg.version, cfg.learning_rate, cfg.per_device_train_batch_size) == ("pretrain", "plain", 1e-3, 16)
        assert not cfg.lora_enable and cfg.pretrain_mm_mlp_adapter is None and cfg.deepspeed == "zero2"
    else:  # final scripts: 128 global (8/GPU), LoRA 128/256 at 2e-4, projector 2e-5, v1_sq with sq_r 0.5
        assert (cfg.stage, cfg.version, cfg.sq_r) == ("finetune", "v1_sq", 0.5)
        assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.learning_rate, cfg.mm_projector_lr) == (128, 256, 0.05, 2e-4, 2e-5)
        assert (cfg.vit_lora_r, cfg.vit_lora_alpha, cfg.vit_lora_dropout) == (32, 64, 0.2)  # the released Vit-lora
        assert cfg.per_device_train_batch_size == 8 and cfg.group_by_modality_length and cfg.image_aspect_ratio == "pad"
        assert cfg.deepspeed == "zero3"
        assert cfg.pretrain_mm_mlp_adapter.endswith(f"sophon/pretrain_{size}/mm_projector.safetensors")


def test_seed_flag_spellings_and_deepspeed_override_compose():
    # a folder named like a key would make Hydra read `deepspeed=...` as a config-group choice
    cfg = compose("vlrepro.sophon.configs", "finetune", ["deepspeed=zero2", "sq_r=0.3"])
    assert cfg.deepspeed == "zero2" and cfg.sq_r == 0.3
    from vlrepro.sophon.train import DEEPSPEED_PRESETS

    for name in DEEPSPEED_PRESETS:
        assert CONFIGS.joinpath("deepspeed_json", f"{name}.json").is_file()


def test_unknown_key_is_a_one_line_error():
    with pytest.raises(VlreproError, match="bad configuration"):
        compose("vlrepro.sophon.configs", "finetune", ["lora_rank=3"])


@pytest.mark.parametrize("name,stage", [("zero2", 2), ("zero3", 3), ("zero3_offload", 3)])
def test_deepspeed_jsons(name, stage):
    ds = json.loads(CONFIGS.joinpath("deepspeed_json", f"{name}.json").read_text())
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["bf16"]["enabled"] == "auto" and ds["train_micro_batch_size_per_gpu"] == "auto"
    if stage == 3:
        z = ds["zero_optimization"]  # LLaVA's zero3_offload.json spells it without "stage3_" (a DeepSpeed alias)
        assert z.get("stage3_gather_16bit_weights_on_model_save", z.get("gather_16bit_weights_on_model_save")) is True
    assert ("offload_optimizer" in ds["zero_optimization"]) == (name == "zero3_offload")


def test_deepspeed_only_when_configured(monkeypatch):
    import importlib.util

    from vlrepro.sophon.train import deepspeed_config_path

    assert deepspeed_config_path(None) is None and deepspeed_config_path("") is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else object())
    with pytest.raises(VlreproError, match="needs the deepspeed package"):
        deepspeed_config_path("zero3")


def test_pretrain_with_the_sq_template_is_refused(tmp_path):
    from vlrepro.sophon.train import run_train

    (tmp_path / "d.json").write_text("[]")
    cfg = compose("vlrepro.sophon.configs", "train", [f"data_path={tmp_path / 'd.json'}", "stage=pretrain"])
    with pytest.raises(VlreproError, match="plain template"):
        run_train(cfg)
    assert OmegaConf.select(cfg, "version") == "v1_sq"
