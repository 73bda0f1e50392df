"""The Shikra-architecture model: splice order, frozen tower, round trips, the released-checkpoint layout."""

from __future__ import annotations

import json

import pytest
import torch
from vlrepro.lcl.model import (
    IM_END,
    IM_PATCH,
    IM_START,
    MODEL_TYPE,
    LCLForCausalLM,
    expand2square,
    load_lcl,
    splice_image_features,
)


def test_config_type_is_private_and_roundtrips(tiny, tiny_ckpt):
    model, tok, proc = tiny
    cfg = json.loads((tiny_ckpt / "config.json").read_text())
    assert cfg["model_type"] == MODEL_TYPE != "llava"
    assert (tiny_ckpt / "model.safetensors").is_file()
    assert model.config.im_patch_token == tok.convert_tokens_to_ids(IM_PATCH)
    assert len(tok) == model.config.vocab_size == model.get_input_embeddings().weight.shape[0]
    assert model.config.image_token_len == 16  # 32 px / patch 8 -> 4 x 4 patches


def test_save_pretrained_from_pretrained_identity(tiny, tmp_path):
    model, tok, proc = tiny
    model.save_pretrained(tmp_path, safe_serialization=True)
    tok.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    again, tok2, _ = load_lcl(tmp_path)
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert tok2.convert_tokens_to_ids(IM_END) == tok.convert_tokens_to_ids(IM_END)


def test_splice_puts_image_k_in_block_k():
    P, H = 2, 3
    ids = torch.tensor([[5, 9, 7, 7, 8, 5, 9, 7, 7, 8], [9, 7, 7, 8, 5, 5, 5, 5, 5, 5]])  # 9 start, 7 patch, 8 end
    emb = torch.zeros(2, 10, H)
    feats = torch.arange(3 * P * H, dtype=torch.float).reshape(3, P, H)  # images 0,1 (sample 0), 2 (sample 1)
    out = splice_image_features(ids, emb, feats, im_patch_token=7)
    assert torch.equal(out[0, 2:4], feats[0]) and torch.equal(out[0, 7:9], feats[1]) and torch.equal(out[1, 1:3], feats[2])
    assert torch.equal(out[0, 0], torch.zeros(H))  # text positions untouched
    with pytest.raises(ValueError):
        splice_image_features(ids, emb, feats[:2], im_patch_token=7)


def test_features_are_penultimate_layer_patches(tiny):
    model, _, _ = tiny
    pix = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = model.encode_images(pix)  # [2, 16, H]
        hs = model.vision_tower(pix, output_hidden_states=True).hidden_states[-2][:, 1:]
        want = model.model.mm_projector(hs)
    assert got.shape == (2, 16, model.config.hidden_size) and torch.allclose(got, want)


def test_forward_backward_grads_skip_vision(tiny):
    model, tok, _ = tiny
    L = model.config.image_token_len
    blk = [tok.convert_tokens_to_ids(IM_START)] + [tok.convert_tokens_to_ids(IM_PATCH)] * L + [tok.convert_tokens_to_ids(IM_END)]
    ids = torch.tensor([[1, 30, 31] + blk + [40, 41, 2]])
    labels = torch.full_like(ids, -100)
    labels[0, -3:] = ids[0, -3:]
    model.train()
    model.zero_grad()
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), images=torch.randn(1, 1, 3, 32, 32), labels=labels)
    out.loss.backward()
    model.eval()
    assert torch.isfinite(out.loss)
    assert model.model.mm_projector.weight.grad is not None and model.model.mm_projector.weight.grad.abs().sum() > 0
    assert model.lm_head.weight.grad is not None
    assert all(p.grad is None for p in model.vision_tower.parameters())
    model.zero_grad()


def test_greedy_generation_is_deterministic_and_left_padding_safe(tiny):
    model, tok, _ = tiny
    L = model.config.image_token_len
    blk = [tok.convert_tokens_to_ids(IM_START)] + [tok.convert_tokens_to_ids(IM_PATCH)] * L + [tok.convert_tokens_to_ids(IM_END)]
    ids = torch.tensor([[1, 30] + blk + [40]])
    img = torch.randn(1, 3, 32, 32)
    kw = dict(max_new_tokens=5, eos_token_id=tok.eos_token_id, pad_token_id=0)
    a = model.greedy_generate(ids, torch.ones_like(ids), img, **kw)
    b = model.greedy_generate(ids, torch.ones_like(ids), img, **kw)
    assert torch.equal(a, b)
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones_like(ids)], dim=1)
    c = model.greedy_generate(padded, mask, img, **kw)
    assert torch.equal(a, c)


def test_expand2square_pads_white():
    from PIL import Image

    sq = expand2square(Image.new("RGB", (40, 20), (0, 0, 0)))
    assert sq.size == (40, 40) and sq.getpixel((0, 0)) == (255, 255, 255) and sq.getpixel((20, 20)) == (0, 0, 0)


@pytest.mark.parametrize("with_inv_freq", [True, False])
def test_loads_released_llava_layout(tiny, tmp_path, with_inv_freq):
    """A folder in the LCL_2WAY_WEIGHT layout (model_type llava, sharded .bin, no CLIP weights) loads by explicit class.

    Dumps from transformers <= 4.31 carry the rotary ``inv_freq`` buffers, later ones do not: both load.
    """
    model, tok, proc = tiny
    rel = tmp_path / "release"
    rel.mkdir()
    state = {k: v.clone() for k, v in model.state_dict().items()
             if not k.startswith("vision_tower.") and (with_inv_freq or not k.endswith("inv_freq"))}
    assert any(k.endswith("inv_freq") for k in state) == with_inv_freq
    keys = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2], "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    for name, ks in shards.items():
        torch.save({k: state[k] for k in ks}, rel / name)
    (rel / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {k: n for n, ks in shards.items() for k in ks}}))
    cfg = model.config.to_dict()
    for k in ("vision_config", "im_patch_token", "im_start_token", "im_end_token", "image_token_len"):
        cfg.pop(k)
    cfg.update(model_type="llava", architectures=["LlavaLlamaForCausalLM"], mm_vision_tower="/mnt/lustre/somewhere/clip",
               bos_token_id=0, eos_token_id=1, pad_token_id=-1)
    (rel / "config.json").write_text(json.dumps(cfg))
    tok.save_pretrained(rel)
    clip = tmp_path / "clip"
    model.vision_tower.save_pretrained(clip, safe_serialization=True)
    proc.save_pretrained(clip)

    from vlrepro.lcl.model import load_released_checkpoint

    loaded, tok2, _ = load_released_checkpoint(rel, vision_tower=str(clip))
    assert isinstance(loaded, LCLForCausalLM) and loaded.config.model_type == MODEL_TYPE
    a, b = model.state_dict(), loaded.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config.mm_vision_tower == str(clip) and loaded.config.eos_token_id == tok.eos_token_id
