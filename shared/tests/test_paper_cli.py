"""The paper command-line contract, exercised on a throwaway package with its own Hydra configs."""

from __future__ import annotations

import sys
import textwrap

import pytest
from vlrepro.shared.errors import VlreproError
from vlrepro.shared.paper_cli import Verb, parse_verb_args, run_paper_cli


@pytest.fixture()
def toy_configs(tmp_path, monkeypatch):
    pkg = tmp_path / "toypaper_cfgs"
    (pkg / "model").mkdir(parents=True)
    (pkg / "experiment").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "run.yaml").write_text(textwrap.dedent("""\
        defaults:
          - _self_
          - model: small
          - experiment: null
        device: cpu
        out_dir: out
        seed: 0
        lr: 0.1
        bs: 1
        data_path: ${oc.env:TOY_DATA,/nonexistent}
        """))
    (pkg / "model" / "small.yaml").write_text("width: 8\n")
    (pkg / "model" / "big.yaml").write_text("width: 64\n")
    (pkg / "experiment" / "paper.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: big\nlr: 0.001\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("toypaper_cfgs", None)
    return "toypaper_cfgs"


def _cli(config_module, argv, seen):
    def run(cfg):
        seen.append(cfg)
        if cfg.lr < 0:
            raise VlreproError("lr must be positive", fix="pass lr=0.1")
        return 0

    verbs = [Verb("run", "run the toy", run, flags={"--per_device_eval_batch_size": "bs"})]
    return run_paper_cli(dist="vlrepro-toy", paper="Toy paper", config_module=config_module, verbs=verbs, argv=argv)


def test_overrides_flags_and_presets(toy_configs, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the device check passes; nothing runs on it
    seen = []
    assert _cli(toy_configs, ["run", "--device", "cuda", "--out=/tmp/o", "lr=0.5"], seen) == 0
    cfg = seen[-1]
    assert (cfg.device, cfg.out_dir, cfg.lr, cfg.model.width) == ("cuda", "/tmp/o", 0.5, 8)
    assert _cli(toy_configs, ["run", "experiment=paper"], seen) == 0
    assert (seen[-1].lr, seen[-1].model.width) == (0.001, 64)
    assert _cli(toy_configs, ["run", "model=big", "--per_device_eval_batch_size", "4", "+extra=1"], seen) == 0
    assert seen[-1].model.width == 64 and seen[-1].bs == 4 and seen[-1].extra == 1


def test_cfg_job_prints_without_running(toy_configs, capsys):
    seen = []
    assert _cli(toy_configs, ["run", "experiment=paper", "--cfg", "job"], seen) == 0
    assert seen == []
    out = capsys.readouterr().out
    assert "lr: 0.001" in out and "width: 64" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["nope"], "unknown verb 'nope'"),
        (["run", "no_such_key=1"], "bad configuration"),
        (["run", "model=huge"], "bad configuration"),
        (["run", "--frobnicate", "1"], "unknown option --frobnicate"),
        (["run", "lr=-1"], "lr must be positive — pass lr=0.1"),
        (["run", "stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_input_is_one_line_exit_2(toy_configs, capsys, argv, needle):
    assert _cli(toy_configs, argv, []) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_cuda_without_a_gpu_and_unknown_devices_are_one_line_errors(toy_configs, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    seen = []
    assert _cli(toy_configs, ["run", "--device", "cuda"], seen) == 2
    err = capsys.readouterr().err
    assert "sees no CUDA GPU" in err and "--device cpu" in err and err.count("\n") == 1 and seen == []
    assert _cli(toy_configs, ["run", "--device", "gpu0"], seen) == 2
    assert "unknown device 'gpu0'" in capsys.readouterr().err and seen == []


def test_help_and_version(toy_configs, capsys):
    assert _cli(toy_configs, ["--help"], []) == 0
    assert "run  run the toy" in capsys.readouterr().out
    assert _cli(toy_configs, ["--version"], []) == 0
    out = capsys.readouterr().out
    assert out.startswith("vlrepro-toy ") and "transformers" in out and "torch" in out
    assert _cli(toy_configs, ["run", "--help"], []) == 0
    assert "--per_device_eval_batch_size" in capsys.readouterr().out


def test_parse_verb_args_lcl_spelling():
    overrides, mode = parse_verb_args(
        ["--cfg-options", "data_args.shot=2", "model_args.model_name_or_path=/w", "--seed", "3"], {"--seed": "seed"}
    )
    assert overrides == ["data_args.shot=2", "model_args.model_name_or_path=/w", "seed=3"] and mode is None
