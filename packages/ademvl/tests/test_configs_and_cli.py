"""Every shipped config composes; the seed README's commands work as typed; presets hold the README values."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from vlrepro.ademvl.cli import main, normalize_seed_args
from vlrepro.shared.paper_cli import compose

MODULE = "vlrepro.ademvl.configs"
EXPERIMENTS = Path(__file__).resolve().parents[1] / "src/vlrepro/ademvl/configs/experiment"
TRAIN_PRESETS = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml") if not p.stem.startswith("eval_"))
EVAL_PRESETS = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml") if p.stem.startswith("eval_"))

# The seed README's three fine-tuning commands (the arguments after `train.py`), verbatim.
_SEED_TRAIN = ("--data_root /path/to/data/ --clip_root /path/to/data/weights/clip/ --caption_file /path/to/data/captions.json "
               "--llama_model_path /path/to/data/weights/ --llm_model 7B --max_seq_len 512 --batch_size 2 --accum_iter 2 "
               "--epochs {epochs} --warmup_epochs {warmup} --blr 9e-3 --weight_decay 0.02 --adapter_dim 12 --alpha 0.1 "
               "--beta 0.01 --drop_ratio 0.1 --down_sample_num 256 64 --dataset {dataset}")
SEED_RUNS = [("sqa", 20, 2, "sqa_7b"), ("coco_caption", 5, 0.1, "coco_caption_7b"), ("instruction", 15, 0.2, "instruction_7b")]
# The README's eval commands (eval_sqa.py / eval_caption.py / eval_instruction.py): `--model` is not a flag of the original
_SEED_EVAL = ("--data_root /path/to/data/ --clip_root /path/to/data/weights/clip/ --model 7B --adapter_path ./output_dir "
              "--alpha 0.1 --beta 0.01 --drop_ratio 0.1 --down_sample_num 256 64")


def composed(capsys, argv: list[str]) -> dict:
    """What ``vlrepro-ademvl <argv> --cfg job`` prints, parsed."""
    capsys.readouterr()
    assert main([*argv, "--cfg", "job"]) in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def check_readme_values(cfg, *, epochs, warmup, dataset, llm="7B"):
    assert cfg["llm_model"] == llm and cfg["max_seq_len"] == 512
    assert cfg["batch_size"] == 2 and cfg["accum_iter"] == 2
    assert cfg["epochs"] == epochs and float(cfg["warmup_epochs"]) == float(warmup)
    assert float(cfg["blr"]) == 9e-3 and float(cfg["weight_decay"]) == 0.02
    assert cfg["adapter_dim"] == 12 and cfg["alpha"] == 0.1 and cfg["beta"] == 0.01 and cfg["drop_ratio"] == 0.1
    assert list(cfg["down_sample_num"]) == [256, 64] and cfg["dataset"] == dataset


@pytest.mark.parametrize("verb", ["train", "eval", "smoke"])
def test_every_verb_config_composes_with_the_common_keys(verb):
    cfg = compose(MODULE, verb, [])
    assert {"device", "out_dir", "seed", "alpha", "beta", "drop_ratio", "down_sample_num", "no_cls"} <= set(cfg)


def test_every_preset_is_shipped():
    assert TRAIN_PRESETS == sorted(f"{t}_{s}" for t in ("sqa", "coco_caption", "instruction") for s in ("7b", "13b"))
    assert EVAL_PRESETS == sorted(f"eval_{t}_{s}" for t in ("sqa", "caption", "mme") for s in ("7b", "13b"))


@pytest.mark.parametrize("preset", TRAIN_PRESETS)
def test_train_presets_hold_the_readme_values(preset):
    cfg = compose(MODULE, "train", [f"experiment={preset}"])
    task, size = preset.rsplit("_", 1)
    epochs, warmup = {"sqa": (20, 2), "coco_caption": (5, 0.1), "instruction": (15, 0.2)}[task]
    check_readme_values(cfg, epochs=epochs, warmup=warmup, dataset=task, llm=size.upper())


@pytest.mark.parametrize("preset", EVAL_PRESETS)
def test_eval_presets_compose(preset):
    cfg = compose(MODULE, "eval", [f"experiment={preset}"])
    task, size = preset.removeprefix("eval_").rsplit("_", 1)
    assert cfg.task == task and cfg.llm_model == size.upper()
    assert cfg.adapter_dim == 12 and list(cfg.down_sample_num) == [256, 64]
    assert cfg.alpha == 0.1 and cfg.beta == 0.01 and cfg.drop_ratio == 0.1


@pytest.mark.parametrize("dataset,epochs,warmup,preset", SEED_RUNS)
def test_seed_train_commands_work_as_typed(capsys, dataset, epochs, warmup, preset):
    """Every seed flag is a config key of the same name; the result equals the preset."""
    argv = shlex.split(_SEED_TRAIN.format(epochs=epochs, warmup=warmup, dataset=dataset))
    cfg = composed(capsys, ["train", *argv])
    check_readme_values(cfg, epochs=epochs, warmup=warmup, dataset=dataset)
    assert cfg["data_root"] == "/path/to/data/" and cfg["clip_root"] == "/path/to/data/weights/clip/"
    assert cfg["caption_file"] == "/path/to/data/captions.json" and cfg["llama_model_path"] == "/path/to/data/weights/"
    flags = {t[2:] for t in argv if t.startswith("--")}
    assert flags <= set(cfg), flags - set(cfg)  # same names
    preset_cfg = composed(capsys, ["train", f"experiment={preset}"])
    for key in flags - {"data_root", "clip_root", "caption_file", "llama_model_path"}:
        assert preset_cfg[key] == cfg[key], key


@pytest.mark.parametrize("task", ["sqa", "caption", "mme"])
def test_seed_eval_commands_work_in_ours(capsys, task):
    """The README's `--model 7B` (rejected by the original) is llm_model; adapter_dim is the eval scripts' 12."""
    cfg = composed(capsys, ["eval", f"task={task}", *shlex.split(_SEED_EVAL)])
    assert cfg["llm_model"] == "7B" and cfg["task"] == task and cfg["adapter_path"] == "./output_dir"
    assert cfg["adapter_dim"] == 12 and cfg["down_sample_num"] == [256, 64]
    assert cfg["llama_model_path"] is None  # -> <data_root>/weights, where the README puts tokenizer.model


def test_seed_flag_spellings_are_normalised():
    assert normalize_seed_args(["--down_sample_num", "256", "64", "--no_cls", "--alpha", "0.2"]) == [
        "down_sample_num=[256,64]", "no_cls=true", "--alpha", "0.2"]
    assert normalize_seed_args(["--down_sample_num", "64"]) == ["down_sample_num=[64]"]  # single scale (ablations)
    assert normalize_seed_args(["--local_rank", "3", "--pin_mem", "x=1"]) == ["x=1"]


def test_cli_bad_input_is_a_one_line_error(capsys):
    capsys.readouterr()
    assert main(["train", "--not_a_flag", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown option --not_a_flag" in err[0] and "--blr" in err[0]
    assert main(["eval", "no_such_key=1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
