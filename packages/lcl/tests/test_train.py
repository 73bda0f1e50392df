"""Training knobs of spec §2.6: the FSDP full-shard plugin, gradient checkpointing leaves loss and grads unchanged."""

from __future__ import annotations

import copy

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
