"""The command-line contract of DESIGN.md, for every paper whose env ci/test.sh synced.

Mirrors ../shared/checks/paper-contract.sh without the smoke run (each paper's own tests run
smoke end to end): the verbs exist, every verb's --help works, and `eval` with no data anywhere
fails with one line that names what is missing — no traceback, non-zero exit, nothing written.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERBS = {
    "live": ["smoke", "train", "eval"],
    "leverlm": ["smoke", "generate", "train", "eval"],
    "lcl": ["smoke", "train", "eval", "demo"],
    "sophon": ["smoke", "pretrain", "finetune", "eval", "demo"],
    "ademvl": ["smoke", "train", "eval"],
}


def _cli(paper: str) -> Path:
    cli = ROOT / ".venvs" / paper / "bin" / f"vlrepro-{paper}"
    if not cli.exists():
        pytest.skip(f".venvs/{paper} not synced (ci/test.sh syncs the papers it tests)")
    return cli


def _run(cmd, tmp_path, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("COCO_PATH", "VQAV2_PATH", "OKVQA_PATH", "SCIENCEQA_PATH",
                                                          "ISEKAI_PATH", "IMAGENET_PATH", "MME_PATH", "LLAVA_DATA_PATH")}
    e.update(HF_HUB_OFFLINE="1", **env)
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=e)


@pytest.mark.parametrize("paper", sorted(VERBS))
def test_verbs_listed_and_each_has_help(paper, tmp_path):
    cli = _cli(paper)
    out = _run([cli, "--help"], tmp_path).stdout
    for verb in VERBS[paper]:
        assert f"  {verb} " in out, f"vlrepro-{paper} --help does not list {verb}"
        r = _run([cli, verb, "--help"], tmp_path)
        assert r.returncode == 0 and "usage:" in r.stdout, r.stderr


@pytest.mark.parametrize("paper", sorted(VERBS))
def test_eval_without_data_is_one_line_error(paper, tmp_path):
    cli = _cli(paper)
    res = tmp_path / "res"
    r = _run([cli, "eval"], tmp_path, VLREPRO_DATA="/nonexistent-vlrepro", RESULT_DIR=str(res))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "nonexistent-vlrepro" in r.stderr, r.stderr[-3000:]
    assert not (res / "results.json").exists() and not list(tmp_path.rglob("results.json"))


@pytest.mark.parametrize("paper", sorted(VERBS))
def test_every_verb_config_composes(paper, tmp_path):
    cli = _cli(paper)
    for verb in VERBS[paper]:
        r = _run([cli, verb, "--cfg", "job"], tmp_path)
        assert r.returncode == 0, f"{verb}: {r.stderr[-2000:]}"
        for key in ("device:", "out_dir:", "seed:"):
            assert key in r.stdout, f"vlrepro-{paper} {verb} config lacks top-level {key}"
