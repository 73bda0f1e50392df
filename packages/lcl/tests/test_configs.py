"""Every shipped config and preset composes; the seed's override keys and flags work as written."""

from __future__ import annotations

from pathlib import Path

import pytest
from vlrepro.lcl import cli
from vlrepro.shared.paper_cli import compose, parse_verb_args

CONFIGS = Path(cli.__file__).parent / "configs"
PRESETS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
VERBS = {v.name: v for v in cli.VERBS}


def _compose(verb: str, args: list[str]):
    v = VERBS[verb]
    overrides, _ = parse_verb_args(args, {"--device": "device", "--out": "out_dir", "--seed": "seed", **v.flags})
    return compose("vlrepro.lcl.configs", v.config, overrides)


def test_presets_named_after_seed_configs():
    assert PRESETS == ["lcl_eval_imagenet100", "lcl_eval_isekai_10", "lcl_eval_isekai_pair", "lcl_train_2way_weight", "lcl_train_mix1"]


@pytest.mark.parametrize("verb", ["smoke", "train", "eval", "demo"])
def test_every_verb_config_composes_with_common_keys(verb):
    cfg = _compose(verb, [])
    assert cfg.device == "cpu" and "out_dir" in cfg and "seed" in cfg


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.startswith("lcl_train")])
def test_train_presets(preset, monkeypatch):
    monkeypatch.setenv("VLREPRO_DATA", "/data-root")
    monkeypatch.delenv("IMAGENET_PATH", raising=False)
    cfg = _compose("train", [f"experiment={preset}"])
    assert cfg.training_args.learning_rate == 2e-5 and cfg.training_args.lr_scheduler_type == "cosine"
    assert cfg.training_args.num_train_epochs == 50 and cfg.training_args.bf16
    assert cfg.training_args.fsdp == "full_shard auto_wrap"
    assert cfg.training_args.fsdp_transformer_layer_cls_to_wrap == "LlamaDecoderLayer"
    assert cfg.data_args.train.filename == "/data-root/imagenet/train900_pairs.jsonl"
    assert cfg.data_args.use_mix == (preset == "lcl_train_mix1")


def test_seed_train_command():
    # accelerate launch ... mllm/pipeline/finetune.py config/lcl_train_2way_weight.py
    #   --cfg-options data_args.use_icl=True --cfg-options model_args.model_name_or_path=/path/to/init/checkpoint
    cfg = _compose("train", ["experiment=lcl_train_2way_weight", "--cfg-options", "data_args.use_icl=True",
                             "--cfg-options", "model_args.model_name_or_path=/path/to/init/checkpoint"])
    assert cfg.data_args.use_icl is True and cfg.model_args.model_name_or_path == "/path/to/init/checkpoint"
    assert cfg.data_args.policy == "2way_weight" and cfg.training_args.save_steps == 500


@pytest.mark.parametrize("preset,key", [("lcl_eval_isekai_10", "ISEKAI_10"), ("lcl_eval_isekai_pair", "ISEKAI_PAIR"),
                                        ("lcl_eval_imagenet100", "ImageNet1k_test100")])
def test_seed_eval_commands(preset, key):
    cfg = _compose("eval", [f"experiment={preset}", "--cfg-options", "data_args.use_icl=True",
                            "--cfg-options", "model_args.model_name_or_path=/path/to/checkpoint",
                            "--per_device_eval_batch_size", "1", "data_args.shot=8"])
    assert list(cfg.data_args.multitest) == [key]
    assert cfg.training_args.per_device_eval_batch_size == 1 and cfg.data_args.shot == 8
    assert cfg.model_args.model_name_or_path == "/path/to/checkpoint"
    assert cfg.data_args.gen_kwargs.max_new_tokens == 1024 and cfg.data_args.gen_kwargs.num_beams == 1


def test_original_style_dotted_overrides():
    cfg = _compose("eval", ["experiment=lcl_eval_isekai_10", "data_args.multitest.ISEKAI_10.cfg.filename=/x/ISEKAI-10.json"])
    assert cfg.data_args.multitest.ISEKAI_10.cfg.filename == "/x/ISEKAI-10.json"


def test_imagenet100_paper_values_by_total_shots():
    cfg = _compose("eval", ["experiment=lcl_eval_imagenet100"])
    assert cfg.paper_values[2] == 0.69 and cfg.paper_values[16] == 0.79
    assert cfg.data_args.multitest.ImageNet1k_test100.cfg.sample_per_class == 50


def test_demo_flags_and_default_bind():
    cfg = _compose("demo", ["--model_path", "/ckpt", "--load_in_8bit", "true"])
    assert cfg.model_path == "/ckpt" and cfg.load_in_8bit is True and cfg.server_name == "127.0.0.1"
    # the seed's --server_name/--server_port and the --host/--port that vlrepro-sophon demo also takes
    assert (_compose("demo", ["--server_name", "0.0.0.0", "--server_port", "7860"]).server_name,
            _compose("demo", ["--host", "0.0.0.0", "--port", "7861"]).server_port) == ("0.0.0.0", 7861)


def test_cfg_job_prints(capsys):
    assert cli.main(["eval", "experiment=lcl_eval_isekai_pair", "--cfg", "job"]) == 0
    assert "ISEKAI_PAIR" in capsys.readouterr().out


def test_eval_without_data_is_one_line_error(monkeypatch, capsys):
    monkeypatch.setenv("VLREPRO_DATA", "/nonexistent-vlrepro")
    for var in ("ISEKAI_PATH", "IMAGENET_PATH", "MODEL_CPK_DIR", "RESULT_DIR"):
        monkeypatch.delenv(var, raising=False)
    assert cli.main(["eval"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "/nonexistent-vlrepro/isekai/ISEKAI-10.json" in err and "Traceback" not in err


def test_unknown_key_is_one_line_error(capsys):
    assert cli.main(["train", "data_args.nope=1"]) == 2
    assert "bad configuration" in capsys.readouterr().err


def test_seed_demo_command_bare_8bit_flag(capsys):
    # python ./mllm/demo/demo.py --model_path /path/to/lcl/ckpt --load_in_8bit   (store_true in the original)
    assert cli.main(["demo", "--model_path", "/path/to/lcl/ckpt", "--load_in_8bit", "--cfg", "job"]) == 0
    out = capsys.readouterr().out
    assert "load_in_8bit: true" in out and "model_path: /path/to/lcl/ckpt" in out and "server_name: 127.0.0.1" in out
    assert cli._expand_bool_flags(["--load_in_8bit", "false", "--load_in_4bit"]) == ["--load_in_8bit", "false", "--load_in_4bit=true"]
