"""Training (train.py): the loss on the mini data goes down, only the ICV trains, checkpoints hold only it."""

from __future__ import annotations

import torch
from omegaconf import open_dict
from vlrepro.live.checkpoint import load_icv
from vlrepro.live.data import ICVTrainDataset, load_split
from vlrepro.live.method import GlobalICVEncoder
from vlrepro.live.prompts import VQAPrompt
from vlrepro.live.train import LIVEModule, build_trainer, train
from vlrepro.shared.paper_cli import compose

MODULE = "vlrepro.live.configs"


def _cfg(mini_root, tiny_dirs, out, **over):
    cfg = compose(MODULE, "smoke", [f"{k}={v}" for k, v in over.items()])
    with open_dict(cfg):
        cfg.out_dir = str(out)
        cfg.lmm.model_path = str(tiny_dirs["idefics"])
        cfg.data_cfg.task.datasets.root_dir = str(mini_root / "vqav2")
        cfg.data_cfg.task.datasets.coco_root = str(mini_root / "coco")
    return cfg


def test_training_lowers_the_loss_on_a_fixed_batch_and_only_the_icv_changes(adapters, mini_root, tiny_dirs, tmp_path):
    cfg = _cfg(mini_root, tiny_dirs, tmp_path, **{"trainer.max_epochs": 4, "data_cfg.task.datasets.max_train_size": 8,
                                                   "data_cfg.task.datasets.few_shot_num": 1})
    a = adapters["idefics"]
    records = load_split(cfg.data_cfg.task.datasets, "train")
    ds = ICVTrainDataset(records, few_shot_num=1, max_train_size=8, seed=0, prompt=VQAPrompt())
    torch.manual_seed(0)
    enc = GlobalICVEncoder(a.num_layers, a.hidden_size, use_sigmoid=False, alpha_init_value=0.1)
    icv_cfg = dict(cfg.icv_module)
    module = LIVEModule(a, enc, a.layer_names(), icv_cfg)
    batch = [ds[i] for i in range(len(ds))]  # the whole query set, epoch-0 demonstrations
    lmm_before = {k: v.clone() for k, v in a.model.state_dict().items()}
    icv_before = enc.icv.detach().clone()
    with torch.no_grad():
        before = module.compute_loss(batch)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True, collate_fn=lambda b: b,
                                         generator=torch.Generator().manual_seed(0))
    trainer = build_trainer(cfg, tmp_path, progress_bar=False)
    trainer.fit(module, loader)
    a.model.eval()
    ds.set_epoch(0)
    with torch.no_grad():
        after = module.compute_loss(batch)
    assert trainer.global_step == 8
    # KL + 0.5 CE on the same queries and demonstrations: lower after training
    assert after["loss"] < before["loss"] - 0.01, (before, after)
    assert after["ce_loss"] < before["ce_loss"]
    # (the random tiny teacher barely uses its demonstrations: KL starts near 0 and may trade off against CE)
    assert torch.isfinite(after["kl_loss"]) and after["kl_loss"] >= 0
    assert not torch.equal(enc.icv, icv_before)
    assert all(torch.equal(v, lmm_before[k]) for k, v in a.model.state_dict().items())
    # Lightning's checkpoint keeps only the vector parameters
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert sorted(ckpt["state_dict"]) == ["icv_encoder.alpha", "icv_encoder.icv"]


def test_train_verb_end_to_end_writes_the_checkpoint_and_lowers_the_loss(mini_root, tiny_dirs, tmp_path):
    cfg = _cfg(mini_root, tiny_dirs, tmp_path, **{"trainer.max_epochs": 3, "data_cfg.task.datasets.max_train_size": 8,
                                                   "data_cfg.task.datasets.few_shot_num": 1})
    summary = train(cfg, progress_bar=False)
    assert summary["train_steps"] == 6 and summary["trainable_parameters"] == 4 * 32 + 4
    assert summary["train_loss_last"] < summary["train_loss_first"]
    enc, names, saved_cfg = load_icv(summary["icv_cpk"])
    assert names == [f"model.layers.{i}" for i in range(4)]
    assert saved_cfg["run_name"] == "smoke" and saved_cfg["icv_module"]["hard_loss_weight"] == 0.5
    assert saved_cfg["lmm"]["model_path"] == str(tiny_dirs["idefics"])  # the resolved config
    assert enc.use_sigmoid is False and enc.icv.shape == (1, 4, 32)
