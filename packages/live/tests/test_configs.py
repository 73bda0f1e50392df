"""Every shipped config composes; every seed README command works as written; presets hold its values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from vlrepro.shared.errors import VlreproError
from vlrepro.shared.paper_cli import compose

MODULE = "vlrepro.live.configs"
PRESETS = ["vqav2_idefics_icv", "okvqa_idefics_icv", "vqav2_idefics2_icv", "okvqa_idefics2_icv"]

# (run_name, few_shot_num, icv_lr, dataset, lmm, precision) of the four seed README train commands
SEED_TRAIN = [
    ("vqav2_idefics_icv", 32, "1e-3", "vqav2", "idefics-9B", "16-mixed"),
    ("okvqa_idefics_icv", 32, "5e-3", "ok_vqa", "idefics-9B", "16-mixed"),
    ("vqav2_idefics2_icv", 1, "1e-3", "vqav2", "idefics2-8B-base", "bf16-mixed"),
    ("okvqa_idefics2_icv", 1, "5e-3", "ok_vqa", "idefics2-8B-base", "bf16-mixed"),
]
SEED_INFERENCE = [
    ("vqav2_idefics_icv", "vqav2", "idefics-9B"),
    ("okvqa_idefics_icv", "ok_vqa", "idefics-9B"),
    ("okvqa_idefics2_icv", "ok_vqa", "idefics2-8B-base"),
    ("vqav2_idefics_icv", "vqav2", "idefics2-8B-base"),
]


def seed_train_overrides(run, k, lr, ds, lmm, precision):
    """The seed README's command line, token for token (quotes as the shell leaves them)."""
    return [f"run_name={run}", "icv_module.icv_encoder.use_sigmoid=False", "icv_module.icv_encoder.alpha_init_value=0.1",
            "data_cfg.task.datasets.max_train_size=8000", f"data_cfg.task.datasets.few_shot_num={k}", "data_cfg.bs=8",
            "data_cfg.num_workers=10", "trainer.accumulate_grad_batches=2", "trainer.devices=4", f"icv_module.icv_lr={lr}",
            "icv_module.hard_loss_weight=0.5", f"data_cfg/task/datasets={ds}", f"lmm={lmm}", f"trainer.precision={precision}"]


def check_readme_values(cfg, run, k, lr, ds, lmm, precision):
    assert cfg.run_name == run
    assert cfg.icv_module.icv_encoder.use_sigmoid is False
    assert cfg.icv_module.icv_encoder.alpha_init_value == 0.1
    assert cfg.data_cfg.task.datasets.max_train_size == 8000
    assert cfg.data_cfg.task.datasets.few_shot_num == k
    assert cfg.data_cfg.bs == 8 and cfg.data_cfg.num_workers == 10
    assert cfg.trainer.accumulate_grad_batches == 2 and cfg.trainer.devices == 4
    assert float(cfg.icv_module.icv_lr) == float(lr)
    assert cfg.icv_module.hard_loss_weight == 0.5
    assert cfg.data_cfg.task.datasets.name == ds
    assert cfg.lmm.name == lmm
    assert cfg.trainer.precision == precision
    # unchanged defaults (spec §3)
    assert cfg.icv_module.alpha_lr == 1e-2 and cfg.icv_module.weight_decay == 1e-3 and cfg.trainer.max_epochs == 10


@pytest.mark.parametrize("verb", ["train", "eval", "smoke"])
def test_every_verb_config_has_the_common_keys(verb):
    cfg = compose(MODULE, verb, [])
    assert {"device", "out_dir", "seed"} <= set(cfg)
    assert cfg.device == "cpu"


@pytest.mark.parametrize("args", SEED_TRAIN, ids=[a[0] for a in SEED_TRAIN])
def test_seed_train_command_composes_as_written(args):
    check_readme_values(compose(MODULE, "train", seed_train_overrides(*args)), *args)


@pytest.mark.parametrize("args", SEED_TRAIN, ids=[a[0] for a in SEED_TRAIN])
def test_experiment_preset_equals_the_seed_command(args):
    preset = compose(MODULE, "train", [f"experiment={args[0]}"])
    check_readme_values(preset, *args)
    assert preset == compose(MODULE, "train", seed_train_overrides(*args))


@pytest.mark.parametrize("args", SEED_INFERENCE)
def test_seed_inference_command_composes(args):
    run, ds, lmm = args
    cfg = compose(MODULE, "eval", [f"run_name={run}", f"data_cfg/task/datasets={ds}", f"lmm={lmm}"])
    assert (cfg.run_name, cfg.data_cfg.task.datasets.name, cfg.lmm.name) == args
    assert cfg.eval.generation.num_beams == 3 and cfg.eval.generation.max_new_tokens == 5


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_compose_for_eval(preset):
    assert compose(MODULE, "eval", [f"experiment={preset}"]).run_name == preset


@pytest.mark.parametrize("group,option", [("trainer", t) for t in ("default", "zero2", "ddp", "debug", "cpu")]
                         + [("lmm", m) for m in ("idefics-9B", "idefics2-8B-base", "tiny-idefics", "tiny-idefics2")])
def test_every_group_option_composes(group, option):
    assert compose(MODULE, "train", [f"{group}={option}"])[group] is not None


def test_hub_ids_and_hook_families():
    assert compose(MODULE, "train", ["lmm=idefics-9B"]).lmm.hf_id == "HuggingFaceM4/idefics-9b"
    lmm2 = compose(MODULE, "train", ["lmm=idefics2-8B-base"]).lmm
    assert lmm2.hf_id == "HuggingFaceM4/idefics2-8b-base" and lmm2.processor_kwargs.do_image_splitting is False


def test_wrong_key_is_a_one_line_error():
    with pytest.raises(VlreproError, match="bad configuration"):
        compose(MODULE, "train", ["icv_module.no_such_key=1"])


def test_deepspeed_preset_without_deepspeed_is_a_clear_error(tmp_path):
    import importlib.util

    from vlrepro.live.train import build_trainer

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed")
    cfg = compose(MODULE, "train", ["trainer=zero2"])
    with pytest.raises(VlreproError, match="needs deepspeed"):
        build_trainer(cfg, tmp_path)


def test_cli_cfg_job_prints_the_seed_command_config():
    cli = Path(sys.executable).parent / "vlrepro-live"
    out = subprocess.run([str(cli), "train", *seed_train_overrides(*SEED_TRAIN[1]), "--cfg", "job"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "run_name: okvqa_idefics_icv" in out.stdout and "name: ok_vqa" in out.stdout and "icv_lr: 0.005" in out.stdout
