"""Tiny randomly initialised IDEFICS / Idefics2 of the real architectures, for smoke runs and tests.

Nothing is downloaded: configs come from ``vlrepro.shared.testing``; the tokenizer is a BPE
trained here with ``tokenizers`` and wrapped in ``LlamaTokenizerFast(tokenizer_object=...)``
(the IDEFICS/Idefics2 processors type-check for the fast LLaMA class, and converting the shared
slow SentencePiece tokenizer to a fast one needs ``protobuf``, which is not a dependency).
Everything is saved with ``save_pretrained`` and loaded back through ``from_pretrained``.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch
from vlrepro.shared.errors import VlreproError

IDEFICS_SPECIAL_TOKENS = ["<fake_token_around_image>", "<image>"]
IDEFICS2_SPECIAL_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]

_WORDS = (
    "red green blue yellow purple orange white black grey gray brown pink square circle triangle cross star "
    "shape shapes colour color what which where is are the of in a an there how many one two three four five "
    "six seven eight nine ten yes no image picture photo shown Question Short answer Provide to question Use "
    "The answer is this that left right top bottom large small big object objects and with on background"
)


def _corpus() -> list[str]:
    words = _WORDS.split()
    lines = [" ".join(words[i : i + 8]) for i in range(0, len(words), 3)]
    lines += ["Provide an answer to the question. Use the image to answer.",
              "Question:what colour is the square? Short answer:red.", "Question:how many shapes are there? Short answer:2."]
    lines += [f"{n} {n + 1} {n * 3}" for n in range(30)]
    return lines * 4


def tiny_fast_tokenizer(out_dir: str | Path, *, extra_special_tokens: list[str], vocab_size: int = 320):
    """A LLaMA-like ``LlamaTokenizerFast`` (BPE, ``▁`` spaces, unk/bos/eos = 0/1/2, pad = unk), saved and reloaded."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    # punctuation isolated so that "answer:" and "answer:red." share the prefix tokens, as with LLaMA
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"), pre_tokenizers.Punctuation(behavior="isolated")])
    bpe.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=list(string.printable.strip()) + ["▁", "\n"], show_progress=False)
    bpe.train_from_iterator(_corpus(), trainer)
    tok = transformers.LlamaTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                          add_bos_token=True, add_eos_token=False, legacy=False)
    tok.pad_token = tok.unk_token
    tok.add_special_tokens({"additional_special_tokens": list(extra_special_tokens)})
    out = Path(out_dir)
    tok.save_pretrained(out)
    return transformers.AutoTokenizer.from_pretrained(out)


def save_tiny_lmm(family: str, out_dir: str | Path, *, seed: int = 0, **config_overrides: Any) -> Path:
    """Save a tiny random IDEFICS / Idefics2 (model + processor) of the real architecture to ``out_dir``.

    Load it back with :func:`vlrepro.live.models.load_lmm` (the real ``from_pretrained`` path).
    IDEFICS keeps IDEFICS-9B's layout: base vocabulary + 2 decoupled "additional" embeddings for
    ``<fake_token_around_image>`` and ``<image>``; gated cross-attention every 2nd layer.
    """
    import transformers
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    from vlrepro.shared import testing

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if family == "idefics":
        tok = tiny_fast_tokenizer(out / "tokenizer", extra_special_tokens=IDEFICS_SPECIAL_TOKENS)
        base = len(tok) - len(IDEFICS_SPECIAL_TOKENS)
        kw = dict(vocab_size=base, additional_vocab_size=len(IDEFICS_SPECIAL_TOKENS))
        kw.update(config_overrides)
        config = testing.tiny_idefics_config(**kw)
        model = transformers.IdeficsForVisionText2Text(config)
        processor = transformers.IdeficsProcessor(
            # idefics-9b's preprocessor_config.json names CLIP's mean/std; the class defaults are None (-> NaN)
            transformers.IdeficsImageProcessor(image_size=config.vision_config.image_size,
                                               image_mean=list(OPENAI_CLIP_MEAN), image_std=list(OPENAI_CLIP_STD)), tok)
    elif family == "idefics2":
        tok = tiny_fast_tokenizer(out / "tokenizer", extra_special_tokens=IDEFICS2_SPECIAL_TOKENS)
        kw = dict(vocab_size=len(tok), image_token_id=tok.convert_tokens_to_ids("<image>"))
        kw.update(config_overrides)
        config = testing.tiny_idefics2_config(**kw)
        model = transformers.Idefics2ForConditionalGeneration(config)
        size = config.vision_config.image_size
        image_processor = transformers.Idefics2ImageProcessor(
            do_image_splitting=False, size={"longest_edge": size, "shortest_edge": size})
        processor = transformers.Idefics2Processor(image_processor, tok, image_seq_len=config.perceiver_config.resampler_n_latents)
    else:
        raise VlreproError(f"unknown lmm family {family!r}", fix="choose idefics or idefics2")
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
