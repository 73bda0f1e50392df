"""Tiny randomly initialised models of the papers' real architectures, for CPU tests and smoke runs.

Nothing here downloads: configs are built in code (sizes follow transformers' own model testers:
hidden 32, intermediate 37, 2 layers), tokenizers are trained locally, and models go through the
real ``save_pretrained`` / ``from_pretrained`` path. Every factory works under each paper's
transformers pin; where a class does not exist in the installed release (IDEFICS < 4.32,
Idefics2 < 4.40, Llava < 4.36) it raises ``unittest.SkipTest``, which pytest reports as a skip.
"""

from __future__ import annotations

import inspect
import json
import tempfile
import unittest
from functools import lru_cache
from pathlib import Path
from typing import Any

#: words the tiny tokenizer is trained on: the mini data sets' vocabulary and the prompt templates
_CORPUS_WORDS = (
    "red green blue yellow purple orange white black square circle triangle cross star shape shapes "
    "colour color what is the of in a an there how many one two three four five six yes no image picture "
    "Question Short answer Answer Caption USER ASSISTANT VUSER user assistant system Provide to question "
    "Use The answer is A B C D Options Context Lecture Solution This photo shows left right top bottom "
    "large small big tiny background object objects and with on describe describe briefly please chat "
    "between curious human artificial intelligence helpful detailed polite answers questions label "
    "support query positive negative class called named concept belongs which"
)


def _tf():
    import transformers

    return transformers


def require_class(name: str):
    """``transformers.<name>``, or ``unittest.SkipTest`` when the installed release lacks it."""
    tf = _tf()
    cls = getattr(tf, name, None)
    if cls is None:
        raise unittest.SkipTest(f"transformers {tf.__version__} has no {name}")
    return cls


def _accepted(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keep only the keyword arguments ``cls.__init__`` names (configs differ across releases)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


# ----------------------------------------------------------------------------- tokenizers
def _corpus_lines() -> list[str]:
    words = _CORPUS_WORDS.split()
    lines = [" ".join(words[i : i + 9]) for i in range(0, len(words), 3)]
    lines += ["Question:what colour is the square? Short answer:red.", "USER: <image> What is this? ASSISTANT: a red square</s>"]
    lines += [f"{n} {n + 1} {n * 7}" for n in range(40)]
    return lines * 4


@lru_cache(maxsize=4)
def sentencepiece_model(vocab_size: int = 320) -> bytes:
    """A LLaMA-style SentencePiece BPE model (byte fallback, unk=0, bos=1, eos=2) trained locally.

    LLaMA's own tokenizer cannot be downloaded here; this one has the same algorithm and special
    ids, so space handling (the merged space before an answer) behaves like LLaMA's.
    """
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus_lines()),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return buf.getvalue()


def tiny_llama_tokenizer(out_dir: str | Path | None = None, *, vocab_size: int = 320, extra_special_tokens: list[str] | None = None):
    """A slow ``LlamaTokenizer`` over :func:`sentencepiece_model`, saved to ``out_dir`` and reloaded.

    ``extra_special_tokens`` (e.g. ``["<image>"]``) are added as additional special tokens.
    Its ``pad_token`` is set to ``unk`` as LLaVA/Vicuna training code does.
    """
    tf = _tf()
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="tiny-llama-tok-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(sentencepiece_model(vocab_size))
    tok = tf.LlamaTokenizer(**_accepted(tf.LlamaTokenizer, {"vocab_file": str(out / "tokenizer.model"), "legacy": True}))
    tok.pad_token = tok.unk_token
    if extra_special_tokens:
        tok.add_special_tokens({"additional_special_tokens": list(extra_special_tokens)})
    tok.save_pretrained(out)
    return tf.AutoTokenizer.from_pretrained(out, use_fast=False)


def tiny_clip_tokenizer(out_dir: str | Path | None = None):
    """A character-level ``CLIPTokenizer`` (byte-level vocabulary, no merges), saved and reloaded."""
    tf = _tf()
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="tiny-clip-tok-"))
    out.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab = {tok: i for i, tok in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tok = tf.CLIPTokenizer(vocab_file=str(out / "vocab.json"), merges_file=str(out / "merges.txt"), pad_token="<|endoftext|>")
    tok.save_pretrained(out)
    return tf.CLIPTokenizer.from_pretrained(out)


# ----------------------------------------------------------------------------- configs
def tiny_llama_config(vocab_size: int = 320, **overrides: Any):
    """``LlamaConfig`` of transformers' LlamaModelTester size (hidden 32, 2 layers, 4 heads)."""
    tf = _tf()
    kw = dict(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
    )
    kw.update(overrides)
    return tf.LlamaConfig(**_accepted(tf.LlamaConfig, kw))


def tiny_clip_vision_config(image_size: int = 32, patch_size: int = 8, **overrides: Any):
    """``CLIPVisionConfig`` with 3 layers (so "penultimate layer" and "all but last" are meaningful)."""
    tf = _tf()
    kw = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
              image_size=image_size, patch_size=patch_size, projection_dim=32)
    kw.update(overrides)
    return tf.CLIPVisionConfig(**kw)


def tiny_clip_config(image_size: int = 32, patch_size: int = 8, **overrides: Any):
    """A full ``CLIPConfig`` (text + vision towers, projection 32) matching :func:`tiny_clip_tokenizer`."""
    tf = _tf()
    text = dict(vocab_size=514, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513, projection_dim=32)
    vision = tiny_clip_vision_config(image_size, patch_size).to_dict()
    return tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=32, **overrides)


def tiny_clip_image_processor(image_size: int = 32):
    """``CLIPImageProcessor`` resizing/cropping to ``image_size`` with CLIP's mean/std."""
    tf = _tf()
    return tf.CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def tiny_clip_model(out_dir: str | Path, *, seed: int = 0, image_size: int = 32):
    """Save a tiny random ``CLIPModel`` + processor to ``out_dir`` (loadable with ``from_pretrained``)."""
    import torch

    tf = _tf()
    torch.manual_seed(seed)
    model = tf.CLIPModel(tiny_clip_config(image_size=image_size)).eval()
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    processor = tf.CLIPProcessor(image_processor=tiny_clip_image_processor(image_size), tokenizer=tiny_clip_tokenizer(out))
    processor.save_pretrained(out)
    return out


def tiny_idefics_config(vocab_size: int = 320, **overrides: Any):
    """``IdeficsConfig`` (IDEFICS v1: LLaMA + gated cross-attention every ``cross_layer_interval`` layers)."""
    cls = require_class("IdeficsConfig")
    kw = dict(
        vocab_size=vocab_size, additional_vocab_size=2, hidden_size=32, intermediate_size=37,
        num_hidden_layers=4, num_attention_heads=4, cross_layer_interval=2, max_position_embeddings=512,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, freeze_text_layers=False, freeze_vision_layers=False,
        vision_config=dict(embed_dim=32, image_size=32, patch_size=8, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37),
        perceiver_config=dict(use_resampler=False),
    )
    kw.update(overrides)
    return cls(**_accepted(cls, kw))


def tiny_idefics2_config(vocab_size: int = 320, image_token_id: int = 0, **overrides: Any):
    """``Idefics2Config`` (SigLIP-style vision + perceiver resampler + Mistral text model)."""
    cls = require_class("Idefics2Config")
    kw = dict(
        image_token_id=image_token_id,
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8),
        perceiver_config=dict(resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2, resampler_head_dim=8, num_key_value_heads=1),
        text_config=dict(model_type="mistral", vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        tie_word_embeddings=False,
    )
    kw.update(overrides)
    return cls(**kw)


def tiny_llava_config(vocab_size: int = 320, image_token_index: int = 0, **overrides: Any):
    """``LlavaConfig`` of a tiny CLIP vision tower + tiny Llama (LLaVA-1.5 layout)."""
    cls = require_class("LlavaConfig")
    kw = dict(vision_config=tiny_clip_vision_config().to_dict(), text_config=tiny_llama_config(vocab_size).to_dict(),
              image_token_index=image_token_index, vision_feature_layer=-2, vision_feature_select_strategy="default")
    kw.update(overrides)
    return cls(**_accepted(cls, kw))


def save_and_reload(model, out_dir: str | Path, **from_pretrained_kwargs: Any):
    """``save_pretrained`` (safetensors) then ``type(model).from_pretrained`` — the real loading path."""
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    return type(model).from_pretrained(out, **from_pretrained_kwargs)
