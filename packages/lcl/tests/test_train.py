"""Training knobs of spec §2.6: the FSDP full-shard plugin, gradient checkpointing leaves loss and grads unchanged."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from vlrepro.lcl.model import IM_END, IM_PATCH, IM_START
from vlrepro.lcl.train import TrainArgs, fsdp_plugin_kwargs


def test_fsdp_full_shard_plugin_as_the_original():
    kw = fsdp_plugin_kwargs(TrainArgs())  # defaults = the original's llava_fsdp.py
    assert kw == {"sharding_strategy": "FULL_SHARD", "use_orig_params": True, "auto_wrap_policy": "transformer_based_wrap",
                  "transformer_cls_names_to_wrap": ["LlamaDecoderLayer"], "state_dict_type": "FULL_STATE_DICT"}
    assert fsdp_plugin_kwargs(TrainArgs(fsdp="")) is None
    with pytest.raises(ValueError):
        fsdp_plugin_kwargs(TrainArgs(fsdp="shard_grad_op"))
    from accelerate import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(**kw)  # the accelerate of our pin accepts these arguments
    assert plugin.use_orig_params is True and "FULL_SHARD" in str(plugin.sharding_strategy)


def test_gradient_checkpointing_keeps_loss_and_grads(tiny):
    model, tok, _ = tiny
    m = copy.deepcopy(model)
    L = m.config.image_token_len
    blk = [tok.convert_tokens_to_ids(IM_START)] + [tok.convert_tokens_to_ids(IM_PATCH)] * L + [tok.convert_tokens_to_ids(IM_END)]
    ids = torch.tensor([[1, 30, 31] + blk + [40, 41, 42, 2]])
    labels = torch.full_like(ids, -100)
    labels[0, -4:] = ids[0, -4:]
    images = torch.randn(1, 1, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def run():
        m.zero_grad(set_to_none=True)
        out = m(input_ids=ids, attention_mask=torch.ones_like(ids), images=images, labels=labels, use_cache=False)
        out.loss.backward()
        return out.loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    m.train()
    loss_a, grads_a = run()
    m.gradient_checkpointing_enable()
    assert m.model.gradient_checkpointing and not m.vision_tower.vision_model.encoder.gradient_checkpointing  # frozen tower
    loss_b, grads_b = run()
    assert torch.allclose(loss_a, loss_b) and grads_a.keys() == grads_b.keys() and len(grads_a) > 0
    assert all(torch.allclose(grads_a[k], grads_b[k], atol=1e-6) for k in grads_a)


def test_resume_from_checkpoint_equals_uninterrupted_run(tiny, mini_data, tmp_path):
    """4 steps straight vs the same run resumed from its step-2 checkpoint: same losses, same weights."""
    from vlrepro.lcl.data import EpisodeTensors, TrainEpisodes, load_train_classes
    from vlrepro.lcl.train import train_model

    model, tok, proc = tiny
    classes = load_train_classes(mini_data / "imagenet")
    tt = EpisodeTensors(tok, proc, model.config.image_token_len, mini_data / "imagenet", dataset="imagenet")
    ds = TrainEpisodes(classes, tt, shot=1, policy="2way", seed=0)
    out = tmp_path / "run"
    args = dict(output_dir=str(out), max_steps=4, save_steps=2, per_device_train_batch_size=2, learning_rate=1e-3,
                warmup_ratio=0.0, gradient_checkpointing=False, fsdp="", bf16=False, dataloader_num_workers=0, logging_steps=1)
    straight = copy.deepcopy(model)
    a = train_model(straight, tok, ds, TrainArgs(**args), progress=False)
    assert (out / "checkpoint-2" / "model.safetensors").is_file() and not (out / "checkpoint-4").exists()
    resumed = copy.deepcopy(model)
    with torch.no_grad():  # a different starting point: only a real resume (weights + optimizer + step) can match
        for prm in resumed.parameters():
            prm.add_(torch.randn_like(prm) * 0.05)
    b = train_model(resumed, tok, ds, TrainArgs(**args, resume=True), progress=False)
    assert len(a.losses) == len(b.losses) == 4
    assert b.losses == pytest.approx(a.losses, abs=1e-5)
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)
    assert not all(torch.equal(sa[k], model.state_dict()[k]) for k in sa)  # it did train


def test_mix_batches_episodes_with_plain_samples(tiny):
    """The mix1 defect fixed (spec §10): an episode (3 images) and a plain VQA sample (1 image) share a batch."""
    import random

    from PIL import Image
    from vlrepro.lcl.data import EpisodeTensors, collate
    from vlrepro.lcl.method import VQA_QUESTION_TEMPLATE, Episode, Round, two_way_episode

    model, tok, proc = tiny
    tt = EpisodeTensors(tok, proc, model.config.image_token_len, Path("/nonexistent"), dataset="imagenet")
    im = [Image.new("RGB", (40, 30), c) for c in ("red", "blue", "green", "white")]
    ep = two_way_episode([(im[0], "zorbex")], [(im[1], "red square")], (im[2], "zorbex"),
                         "Based on the previous examples, what is in the image <image>?", random.Random(0))
    vqa = Episode(support=[], query=Round(im[3], VQA_QUESTION_TEMPLATE.replace("<question>", "What colour?"),
                                          "The answer is white.", template="vicuna_v1.1"))
    batch = collate([tt(ep, train=True), tt(vqa, train=True)], pad_id=0, left_pad=False)
    assert batch["images"].shape[0] == 4  # flat [3 + 1, 3, H, W], prompt order
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], images=batch["images"],
                labels=batch["labels"])
    assert torch.isfinite(out.loss)
    # each sample's supervised tokens are its own final answer
    for row, ans in zip(batch["labels"].tolist(), ('there is "zorbex" in the image.', "The answer is white."), strict=False):
        sup = [t for t in row if t != -100]
        assert tok.decode(sup).strip() == ans + "</s>" and sup[-1] == tok.eos_token_id


def test_mixed_samples_probabilities_and_errors():
    from vlrepro.lcl.runs import MixedSamples
    from vlrepro.shared.errors import VlreproError

    class Src(torch.utils.data.Dataset):
        def __init__(self, tag, n):
            self.tag, self.n = tag, n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return self.tag

    mix = MixedSamples([Src("ep", 10), Src("vqa", 30)], [0.3, 0.1], seed=0)  # normalised to 0.75 / 0.25
    assert len(mix) == 40
    draws = [mix[i] for i in range(4000)] + [MixedSamples([Src("ep", 10), Src("vqa", 30)], [0.3, 0.1], seed=1)[i] for i in range(4000)]
    assert abs(draws.count("ep") / len(draws) - 0.75) < 0.03
    with pytest.raises(VlreproError):  # the original's 22 datasets vs 23 probabilities
        MixedSamples([Src("a", 1)] * 22, [1.0] * 23, seed=0)
