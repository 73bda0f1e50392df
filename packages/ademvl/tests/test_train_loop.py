"""The training loop end to end on mini ScienceQA: loss goes down, checkpoints hold only adapters, resume continues."""

from __future__ import annotations

import json

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file
from vlrepro.ademvl.train import latest_checkpoint, train
from vlrepro.shared.data import make_mini
from vlrepro.shared.paper_cli import compose


def test_train_lowers_loss_checkpoints_and_resumes(tiny_weights, tmp_path):
    make_mini("scienceqa", tmp_path / "data", seed=0, n=8)
    base = compose("vlrepro.ademvl.configs", "smoke", [])
    cfg = OmegaConf.merge(base, dict(
        data_root=str(tmp_path / "data" / "scienceqa"), llama_model_path=str(tiny_weights), clip_root=str(tiny_weights / "clip"),
        caption_file=None, out_dir=str(tmp_path / "run"), epochs=3, warmup_epochs=0, batch_size=4, accum_iter=1,
        lr=2e-2, progress=False))
    logs: list[str] = []
    first = train(OmegaConf.merge(cfg, dict(epochs=2)), log=logs.append)
    assert first["train_steps"] == 4  # 8 examples / batch 4 = 2 optimizer steps per epoch
    # each epoch's mean covers all 8 examples: after 2 steps at lr 2e-2 it is lower
    assert first["epoch_losses"][1] < first["epoch_losses"][0] - 0.5, first["epoch_losses"]
    run = tmp_path / "run"
    assert latest_checkpoint(run).name == "checkpoint-1.state.pt"
    saved = load_file(str(run / "checkpoint-1.safetensors"))
    model = first["model"]
    assert set(saved) == {n for n, p in model.named_parameters() if p.requires_grad}  # adapters only
    assert all("adapter" in k for k in saved)
    meta = torch.load(run / "checkpoint-1.state.pt", weights_only=True)
    assert meta["epoch"] == 1 and meta["step"] == 4 and json.loads(meta["args"])["lr"] == 2e-2
    assert [json.loads(line)["epoch"] for line in (run / "log.txt").read_text().splitlines()] == [0, 1]

    resumed = train(OmegaConf.merge(cfg, dict(resume=True)), log=logs.append)
    assert any("resumed from" in m and "next epoch 2" in m for m in logs)
    assert resumed["train_steps"] == 6 and len(resumed["epoch_losses"]) == 1
    assert latest_checkpoint(run).name == "checkpoint-2.state.pt"
    # the resumed run started from checkpoint-1's adapters, and its steps changed them
    after = load_file(str(run / "checkpoint-2.safetensors"))
    assert not torch.equal(after["adapter_emb2"], saved["adapter_emb2"])
