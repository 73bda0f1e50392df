"""LoRA (spec §1.4): targets, merge identity, ViT-LoRA gradients, the released checkpoint layout."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from vlrepro.sophon import checkpoint as ckpt
from vlrepro.sophon.model import IMAGE_TOKEN_INDEX, SqLlavaForCausalLM


def _inputs():
    torch.manual_seed(3)
    ids = torch.tensor([[1, 5, IMAGE_TOKEN_INDEX, 7, 8, 9]])
    return ids, torch.randn(1, 3, 32, 32)


def _randomise_lora_b(model):
    torch.manual_seed(7)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)


def test_llm_lora_targets_exclude_projector_and_vision(tiny_model):
    peft_model = ckpt.apply_llm_lora(copy.deepcopy(tiny_model), r=4, alpha=8)
    names = ckpt.lora_target_names(peft_model)
    assert names and all(".model.layers." in n for n in names)
    suffixes = {n.rsplit(".", 1)[-1] for n in names}
    assert suffixes == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any("mm_projector" in n or "vision_tower" in n or "lm_head" in n for n in names)


def test_lora_merge_gives_identical_logits(tiny_model):
    ids, images = _inputs()
    peft_model = ckpt.apply_llm_lora(copy.deepcopy(tiny_model), r=4, alpha=8, dropout=0.0).eval()
    _randomise_lora_b(peft_model)
    with torch.no_grad():
        before = peft_model(input_ids=ids, images=images).logits
        base_logits = tiny_model(input_ids=ids, images=images).logits
        merged = peft_model.merge_and_unload()
        after = merged(input_ids=ids, images=images).logits
    assert not torch.allclose(before, base_logits)  # the adapter does something
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert isinstance(merged, SqLlavaForCausalLM)


def test_vit_lora_gets_gradients_up_to_selected_layer(tiny_model):
    model = copy.deepcopy(tiny_model).train()
    ckpt.apply_vit_lora(model, r=4, alpha=8, dropout=0.0)
    targets = ckpt.lora_target_names(model.model.vision_tower)
    assert {n.rsplit(".", 1)[-1] for n in targets} == {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}
    _randomise_lora_b(model)
    ids, images = _inputs()
    model(input_ids=ids, images=images, labels=ids.masked_fill(ids == IMAGE_TOKEN_INDEX, -100)).loss.backward()
    n_layers = model.model.vision_tower.vision_tower.config.num_hidden_layers  # 3; features from layer -2
    for n, p in model.named_parameters():
        if "vision_tower" in n and "lora_B" in n:
            layer = int(n.split("layers.")[1].split(".")[0])
            has_grad = p.grad is not None and p.grad.abs().sum() > 0
            assert has_grad == (layer < n_layers - 1), n


def test_vit_lora_compat_mode_never_trains(tiny_model):
    model = copy.deepcopy(tiny_model).train()
    model.config.vit_lora_compat = True
    ckpt.apply_vit_lora(model, r=4, alpha=8, dropout=0.0)
    ids, images = _inputs()
    model(input_ids=ids, images=images, labels=ids.masked_fill(ids == IMAGE_TOKEN_INDEX, -100)).loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if "vision_tower" in n and "lora_" in n)


@pytest.fixture()
def base_dirs(tmp_path, tiny_model, tokenizer):
    """A Vicuna-like folder (plain Llama weights of the tiny model) and a CLIP folder."""
    from transformers import CLIPImageProcessor, LlamaConfig, LlamaForCausalLM

    llm_cfg = LlamaConfig(**{k: v for k, v in tiny_model.config.to_dict().items()
                             if k in LlamaConfig().to_dict() and k not in ("model_type", "architectures")})
    llm = LlamaForCausalLM(llm_cfg)
    llm.load_state_dict({k: v for k, v in tiny_model.state_dict().items() if "vision_tower" not in k and "mm_projector" not in k})
    llm.save_pretrained(tmp_path / "vicuna", safe_serialization=True)
    tokenizer.save_pretrained(tmp_path / "vicuna")
    tiny_model.model.vision_tower.vision_tower.save_pretrained(tmp_path / "clip", safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path / "clip")
    return tmp_path / "vicuna", tmp_path / "clip"


def _trained_stage2(base_dirs, vit_lora: bool):
    vicuna, clip = base_dirs
    model = ckpt.build_from_base(str(vicuna), str(clip), num_centers=8)
    if vit_lora:
        ckpt.apply_vit_lora(model, r=4, alpha=8, dropout=0.0)
    peft_model = ckpt.apply_llm_lora(model, r=4, alpha=8, dropout=0.0).eval()
    _randomise_lora_b(peft_model)
    with torch.no_grad():
        ckpt.unwrap(peft_model).model.mm_projector.sim_beta.fill_(0.3)
    return peft_model


@pytest.mark.parametrize("vit_lora", [False, True])
def test_stage2_save_and_load_reproduces_logits(base_dirs, tmp_path, vit_lora):
    peft_model = _trained_stage2(base_dirs, vit_lora)
    ids, images = _inputs()
    with torch.no_grad():
        expected = peft_model(input_ids=ids, images=images).logits
    out = tmp_path / "sq-lora"
    ckpt.save_stage2(peft_model, out, ckpt.unwrap(peft_model).config)
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert (out / ckpt.VIT_LORA_DIR).is_dir() == vit_lora
    keys = ckpt.load_tensors(out / ckpt.NON_LORA_FILE).keys()
    assert keys and all(k.startswith("base_model.model.model.mm_projector.") for k in keys)
    loaded = ckpt.load_pretrained_model(out, base_dirs[0])
    assert isinstance(loaded, SqLlavaForCausalLM)
    assert loaded.model.mm_projector.sim_beta.item() == pytest.approx(0.3)
    with torch.no_grad():
        got = loaded(input_ids=ids, images=images).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_loads_released_bin_layout(base_dirs, tmp_path):
    """The release: adapter_model.bin + non_lora_trainables.bin (torch pickles) and model_type 'llava'."""
    peft_model = _trained_stage2(base_dirs, vit_lora=False)
    ids, images = _inputs()
    with torch.no_grad():
        expected = peft_model(input_ids=ids, images=images).logits
    out = tmp_path / "sqllava-lora-7b"
    peft_model.save_pretrained(out, safe_serialization=False)  # adapter_model.bin
    torch.save({f"base_model.model.model.mm_projector.{k}": v for k, v in
                ckpt.unwrap(peft_model).model.mm_projector.state_dict().items()}, out / "non_lora_trainables.bin")
    cfg = ckpt.unwrap(peft_model).config.to_dict()
    cfg.update(model_type="llava", architectures=["LlavaLlamaForCausalLM"])
    (out / "config.json").write_text(json.dumps(cfg))
    loaded = ckpt.load_pretrained_model(out, base_dirs[0])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids, images=images).logits, expected, rtol=1e-4, atol=1e-4)


def test_prefix_rules():
    assert ckpt.strip_released_prefix("base_model.model.model.mm_projector.c.weight") == "model.mm_projector.c.weight"
    assert ckpt.remap_released_config({"model_type": "llava"})["model_type"] == "sq_llava"
