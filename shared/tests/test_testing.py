"""The tiny-model factories: real save_pretrained/from_pretrained round trips under this env's pin."""

from __future__ import annotations

import unittest

import pytest
import torch
from vlrepro.shared import testing as T


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return T.tiny_llama_tokenizer(tmp_path_factory.mktemp("tok"), extra_special_tokens=["<image>"])


def test_sentencepiece_is_deterministic_and_llama_like(tok):
    assert T.sentencepiece_model() == T.sentencepiece_model.__wrapped__(320)
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    text = "Question:what colour is the square? Short answer:red."
    ids = tok(text).input_ids
    assert ids[0] == 1 and tok.decode(ids, skip_special_tokens=True) == text
    assert tok.convert_tokens_to_ids("<image>") == 320  # added after the 320 base pieces


def test_llama_round_trip_gives_identical_logits(tok, tmp_path):
    import transformers

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(T.tiny_llama_config(len(tok))).eval()
    again = T.save_and_reload(model, tmp_path / "llama").eval()
    ids = torch.tensor([tok("red square").input_ids])
    assert torch.equal(model(ids).logits, again(ids).logits)
    assert (tmp_path / "llama" / "model.safetensors").is_file()


def test_clip_model_saves_and_loads(tmp_path):
    import transformers
    from PIL import Image

    T.tiny_clip_model(tmp_path / "clip", seed=1)
    model = transformers.CLIPModel.from_pretrained(tmp_path / "clip").eval()
    proc = transformers.CLIPProcessor.from_pretrained(tmp_path / "clip")
    inputs = proc(text=["a red square", "blue"], images=[Image.new("RGB", (64, 48), "red")], return_tensors="pt", padding=True)
    assert inputs["pixel_values"].shape == (1, 3, 32, 32)
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits_per_image.shape == (1, 2) and out.image_embeds.shape == (1, 32)


@pytest.mark.parametrize(
    "model_cls, factory",
    [("IdeficsForVisionText2Text", T.tiny_idefics_config), ("Idefics2ForConditionalGeneration", T.tiny_idefics2_config),
     ("LlavaForConditionalGeneration", T.tiny_llava_config)],
)
def test_multimodal_factories_or_clean_skip(model_cls, factory, tmp_path):
    try:
        cls = T.require_class(model_cls)
        cfg = factory()
    except unittest.SkipTest as e:
        pytest.skip(str(e))
    torch.manual_seed(0)
    model = cls(cfg).eval()
    again = T.save_and_reload(model, tmp_path / "m")
    a = dict(model.state_dict())
    b = dict(again.state_dict())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sum(p.numel() for p in model.parameters()) < 200_000  # tiny means tiny


def test_require_class_skips_cleanly():
    with pytest.raises(unittest.SkipTest, match="has no NoSuchModelClass"):
        T.require_class("NoSuchModelClass")
