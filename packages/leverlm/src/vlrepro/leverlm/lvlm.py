"""The two LVLMs behind Lever-LM (spec §2): OpenFlamingo and IDEFICS, behind one small interface.

An adapter turns processor texts (:mod:`vlrepro.leverlm.prompts`) plus their images into model
tensors, returns next-token logits for scoring and generates continuations for ICL inference:

* OpenFlamingo — ``open_flamingo``'s own ``Flamingo`` + ``FlamingoLMMixin`` around an open_clip
  vision tower and a causal LM; ``vision_x`` is [B, T_img, 1, 3, H, W], zero-padded to the
  largest image count; pad == eos, so InfoScore never counts Flamingo's EOS.
* IDEFICS — ``IdeficsForVisionText2Text``; ``pixel_values`` is [B, N_img, 3, H, W] and
  ``image_attention_mask`` [B, T, N_img] is built the m4 way (each token attends to the latest
  image; nothing after an EOS until the next image).

``build_tiny_*`` make randomly initialised models of the real architectures from configs and save
them, so smoke runs and tests go through the same ``load_lvlm`` path as the 9B checkpoints.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from vlrepro.shared.errors import VlreproError

from .prompts import PromptStyle, style_for

IDEFICS_SPECIAL = ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]
FLAMINGO_SPECIAL = ["<|endofchunk|>", "<image>"]


def _load_pil(img: Any):
    """Images arrive as PIL images, paths, or records with ``load_image()``."""
    from PIL import Image

    if isinstance(img, Image.Image):
        return img.convert("RGB")
    if hasattr(img, "load_image"):
        return img.load_image()
    return _open_path(str(img))


@functools.lru_cache(maxsize=2048)
def _open_path(path: str):
    """Decoded image by path; beam search re-reads the same few images hundreds of times."""
    from vlrepro.shared.data import open_rgb

    return open_rgb(path, dataset="coco")


class LVLMAdapter:
    """Common part: tokenisation with right (scoring) or left (generation) padding."""

    family: str
    tokenizer: Any
    model: torch.nn.Module
    device: torch.device
    precision: str = "fp32"

    def style(self, task: str) -> PromptStyle:
        return style_for(self.family, task, bos_token=self.tokenizer.bos_token, eos_token=self.tokenizer.eos_token)

    def token_count(self, text: str) -> int:
        """Token count of ``text`` tokenised on its own without special tokens (the InfoScore mask length)."""
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _tokenize(self, texts: Sequence[str], padding_side: str) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [self.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        attn = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):
            sl = slice(0, len(x)) if padding_side == "right" else slice(width - len(x), width)
            input_ids[i, sl] = torch.tensor(x, dtype=torch.long)
            attn[i, sl] = 1
        return input_ids, attn  # [B, T], [B, T]

    def pixels(self, img: Any, preprocess) -> torch.Tensor:
        """``preprocess(PIL) -> [3, H, W]`` of one image, memoised by path: beam search shows the same
        ~66 images of an anchor hundreds of times, so each is decoded and normalised once."""
        if not isinstance(img, (str, Path)) or not self.__dict__.get("cache", True):
            return preprocess(_load_pil(img))
        cache = self.__dict__.setdefault("_pixel_cache", {})
        key = str(img)
        if key not in cache:
            if len(cache) > 4096:
                cache.clear()
            cache[key] = preprocess(_load_pil(img))
        return cache[key]

    def autocast(self):
        if self.device.type == "cuda" and self.precision in ("bf16", "fp16"):
            return torch.autocast("cuda", dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)
        return contextlib.nullcontext()

    # subclasses: encode_images(images_per_row) and _forward / _generate
    def logits(self, texts: Sequence[str], images: Sequence[Sequence[Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded forward: returns (logits [B, T, V] float32, input_ids [B, T], attention_mask [B, T])."""
        input_ids, attn = self._tokenize(texts, "right")
        with torch.no_grad(), self.autocast():
            logits = self._forward(input_ids.to(self.device), attn.to(self.device), images)
        return logits.float(), input_ids.to(self.device), attn.to(self.device)

    def generate(self, texts: Sequence[str], images: Sequence[Sequence[Any]], **gen_args: Any) -> list[str]:
        """Left-padded beam/greedy generation; returns the decoded new text of each row."""
        input_ids, attn = self._tokenize(texts, "left")
        with torch.no_grad(), self.autocast():
            out = self._generate(input_ids.to(self.device), attn.to(self.device), images, gen_args)
        new = out[:, input_ids.shape[1]:]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)


# ----------------------------------------------------------------------------- IDEFICS
def idefics_image_attention_mask(input_ids: torch.Tensor, image_token_id: int, eos_token_id: int, num_images: int) -> torch.Tensor:
    """m4's incremental image mask made one-hot: [B, T] -> [B, T, num_images] (long)."""
    inc = torch.full_like(input_ids, -1)
    for b in range(input_ids.shape[0]):
        count, seen_eod = -1, False
        for t, tok in enumerate(input_ids[b].tolist()):
            if tok == image_token_id:
                count += 1
                seen_eod = False
            inc[b, t] = -1 if seen_eod else count
            if tok == eos_token_id:
                seen_eod = True
    inc[inc >= num_images] = -1
    neg = inc == -1
    onehot = torch.nn.functional.one_hot(inc.clamp(min=0), num_classes=max(num_images, 1))
    onehot[neg] = 0
    return onehot


class IdeficsAdapter(LVLMAdapter):
    family = "idefics"

    def __init__(self, model, tokenizer, image_processor, device: torch.device, precision: str = "fp32"):
        self.model, self.tokenizer, self.image_processor = model.eval(), tokenizer, image_processor
        self.device, self.precision = device, precision
        self.image_token_id = tokenizer.convert_tokens_to_ids("<image>")

    def _pixels(self, images: Sequence[Sequence[Any]]) -> torch.Tensor:
        n = max(len(r) for r in images)
        size = self.image_processor.image_size
        pix = torch.zeros(len(images), n, 3, size, size)  # [B, N_img, 3, H, W], zero-padded
        for b, row in enumerate(images):
            for j, x in enumerate(row):
                pix[b, j] = self.pixels(x, lambda im: self.image_processor.preprocess([im])[0])
        return pix.to(self.device, dtype=next(self.model.parameters()).dtype)

    def _inputs(self, input_ids, attn, images):
        pix = self._pixels(images)
        iam = idefics_image_attention_mask(input_ids.cpu(), self.image_token_id, self.tokenizer.eos_token_id, pix.shape[1])
        iam = iam * attn.cpu().unsqueeze(-1)  # padding attends to no image
        return dict(input_ids=input_ids, attention_mask=attn, pixel_values=pix, image_attention_mask=iam.to(self.device))

    def _forward(self, input_ids, attn, images):
        return self.model(**self._inputs(input_ids, attn, images)).logits

    def _generate(self, input_ids, attn, images, gen_args):
        return self.model.generate(**self._inputs(input_ids, attn, images), pad_token_id=self.tokenizer.pad_token_id,
                                   eos_token_id=self.tokenizer.eos_token_id, **gen_args)


# ----------------------------------------------------------------------------- OpenFlamingo
class FlamingoAdapter(LVLMAdapter):
    family = "flamingo"

    def __init__(self, model, tokenizer, image_processor, device: torch.device, precision: str = "fp32"):
        self.model, self.tokenizer, self.image_processor = model.eval(), tokenizer, image_processor
        self.device, self.precision = device, precision

    def _vision_x(self, images: Sequence[Sequence[Any]]) -> torch.Tensor:
        n = max(len(r) for r in images)
        first = None
        rows = []
        for row in images:
            px = [self.pixels(x, self.image_processor) for x in row]
            first = first if first is not None or not px else px[0]
            rows.append(px)
        vx = torch.zeros(len(images), n, 1, *first.shape)  # [B, T_img, F=1, 3, H, W]
        for b, px in enumerate(rows):
            for j, p in enumerate(px):
                vx[b, j, 0] = p
        return vx.to(self.device, dtype=next(self.model.parameters()).dtype)

    def _latents(self, images: Sequence[Sequence[Any]]) -> torch.Tensor:
        """Perceiver latents [B, T_img, n_latents, d] of every row's images, each image encoded once.

        Flamingo's ``_encode_vision_x`` (vision tower, then the per-image perceiver) run only on the
        images not seen before; beam search scores ~65 candidates against the same query and chosen
        ICDs, so most images of a batch are cached. Zero latents fill the padding slots, which no
        text token attends to (only_attend_immediate_media), as the zero images they replace.
        """
        cache = self.__dict__.setdefault("_latent_cache", {})
        keys = [[str(x) if isinstance(x, (str, Path)) else None for x in row] for row in images]
        new = list(dict.fromkeys(k for row in keys for k in row if k is not None and k not in cache))
        loose = [x for row, krow in zip(images, keys, strict=False) for x, k in zip(row, krow, strict=False) if k is None]  # PIL inputs: no key
        todo = new + [None] * len(loose)
        if todo:
            px = torch.stack([self.pixels(k, self.image_processor) for k in new] + [self.image_processor(_load_pil(x)) for x in loose])
            px = px.to(self.device, dtype=next(self.model.parameters()).dtype)  # [U, 3, H, W]
            feats = self.model.vision_encoder(px)[1]  # [U, v, d] patch tokens
            lat = self.model.perceiver(feats[:, None, None])[:, 0]  # [U, n, d]
            if len(cache) + len(new) > 2048:
                cache.clear()
            cache.update({k: lat[i] for i, k in enumerate(new)})
            loose_lat = iter(lat[len(new):])
        n = max(len(r) for r in images)
        some = next(iter(cache.values())) if cache else lat[0]
        out = torch.zeros(len(images), n, *some.shape, dtype=some.dtype, device=some.device)  # [B, T_img, n, d]
        for b, (_row, krow) in enumerate(zip(images, keys, strict=False)):
            for j, k in enumerate(krow):
                out[b, j] = cache[k] if k is not None else next(loose_lat)
        return out

    def _forward(self, input_ids, attn, images):
        if not self.__dict__.get("cache", True):  # the plain path: open_flamingo encodes every image of every row
            return self.model(vision_x=self._vision_x(images), lang_x=input_ids, attention_mask=attn).logits
        m = self.model
        latents = self._latents(images)
        for layer in m.lang_encoder._get_decoder_layers():  # what Flamingo.forward does after _encode_vision_x
            layer.condition_vis_x(latents)
        m._condition_media_locations(input_ids=input_ids)
        try:
            return m.lang_encoder(input_ids=input_ids, attention_mask=attn).logits
        finally:
            m.lang_encoder.clear_conditioned_layers()

    def _generate(self, input_ids, attn, images, gen_args):
        # the original passes tokenizer.eos_token_id, which overrides Flamingo's <|endofchunk|> default
        return self.model.generate(vision_x=self._vision_x(images), lang_x=input_ids, attention_mask=attn,
                                   eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id,
                                   **gen_args)


def _clip_tensor_transform(image_processor):
    """Wrap an HF ``CLIPImageProcessor`` as open_clip's one-image -> [3, H, W] transform."""
    def transform(img):
        return image_processor(images=img, return_tensors="pt")["pixel_values"][0]
    return transform


def build_flamingo(config: dict, tokenizer) -> torch.nn.Module:
    """OpenFlamingo from configs (no download): open_clip ``CLIP`` vision tower + ``LlamaForCausalLM``,
    joined by open_flamingo's ``FlamingoLMMixin`` and ``Flamingo`` exactly as its factory does."""
    import open_clip
    from open_flamingo.src.flamingo import Flamingo
    from open_flamingo.src.flamingo_lm import FlamingoLMMixin
    from open_flamingo.src.utils import extend_instance
    from transformers import LlamaConfig, LlamaForCausalLM

    vcfg = config["vision_cfg"]
    clip = open_clip.CLIP(embed_dim=config["clip_embed_dim"], vision_cfg=open_clip.CLIPVisionCfg(**vcfg),
                          text_cfg=open_clip.CLIPTextCfg(**config["text_cfg"]))
    clip.visual.output_tokens = True
    lang = LlamaForCausalLM(LlamaConfig(**config["lang_config"]))
    extend_instance(lang, FlamingoLMMixin)
    lang.set_decoder_layers_attr_name("model.layers")
    if lang.get_input_embeddings().num_embeddings < len(tokenizer):  # grow only: a real LM's vocab already covers it
        lang.resize_token_embeddings(len(tokenizer))
    # optional sizes of the perceiver resampler / gated cross-attention blocks (open_flamingo hard-codes
    # depth 6, 8 heads × 64, 64 latents: right for 9B, 30× the rest of a tiny test model)
    from unittest import mock

    import open_flamingo.src.flamingo as of_flamingo
    import open_flamingo.src.flamingo_lm as of_lm

    perceiver = functools.partial(of_flamingo.PerceiverResampler, **config.get("perceiver", {}))
    xattn = functools.partial(of_lm.GatedCrossAttentionBlock, **config.get("cross_attn", {}))
    with mock.patch.object(of_flamingo, "PerceiverResampler", perceiver), mock.patch.object(of_lm, "GatedCrossAttentionBlock", xattn):
        return Flamingo(clip, lang, tokenizer.encode("<|endofchunk|>", add_special_tokens=False)[-1],
                        tokenizer.encode("<image>", add_special_tokens=False)[-1], vis_dim=vcfg["width"],
                        cross_attn_every_n_layers=config["cross_attn_every_n_layers"])


# ----------------------------------------------------------------------------- tiny models (tests, smoke)
def tiny_tokenizer(out_dir: Path, family: str):
    """Local LLaMA-style tokenizer with the family's special tokens (kept whitespace-exact), saved + reloaded."""
    from transformers import AddedToken, AutoTokenizer
    from vlrepro.shared.testing import tiny_llama_tokenizer

    tok = tiny_llama_tokenizer(out_dir)
    extra = IDEFICS_SPECIAL if family == "idefics" else FLAMINGO_SPECIAL
    tok.add_special_tokens({"additional_special_tokens": [AddedToken(s, lstrip=False, rstrip=False, normalized=False) for s in extra]})
    if family == "flamingo":
        tok.pad_token = tok.eos_token  # OpenFlamingo's MPT tokenizer: pad == eos
    tok.save_pretrained(out_dir)
    return AutoTokenizer.from_pretrained(out_dir, use_fast=False)


def build_tiny_idefics(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random IDEFICS (shared tiny config, image size 32) with tokenizer and image processor."""
    from transformers import IdeficsForVisionText2Text, IdeficsImageProcessor
    from vlrepro.shared.testing import tiny_idefics_config

    out = Path(out_dir)
    tok = tiny_tokenizer(out, "idefics")
    torch.manual_seed(seed)
    # IDEFICS' decoupled embeddings: vocab_size + additional_vocab_size rows cover the tokenizer
    model = IdeficsForVisionText2Text(tiny_idefics_config(vocab_size=len(tok) - 2, additional_vocab_size=2))
    model.save_pretrained(out, safe_serialization=True)
    # mean/std must be explicit: a processor saved with null mean/std normalises every pixel to NaN
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    IdeficsImageProcessor(image_size=32, image_mean=list(OPENAI_CLIP_MEAN), image_std=list(OPENAI_CLIP_STD)).save_pretrained(out)
    (out / "lvlm.json").write_text(json.dumps({"family": "idefics"}))
    return out


def build_tiny_flamingo(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random OpenFlamingo: ``flamingo_config.json`` + ``model.safetensors`` + tokenizer + image processor."""
    from safetensors.torch import save_model
    from vlrepro.shared.testing import tiny_clip_image_processor, tiny_llama_config

    out = Path(out_dir)
    tok = tiny_tokenizer(out, "flamingo")
    lang = tiny_llama_config(vocab_size=320).to_dict()
    config = {
        "clip_embed_dim": 16,
        "vision_cfg": {"layers": 1, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32},
        "text_cfg": {"context_length": 8, "vocab_size": 50, "width": 16, "heads": 2, "layers": 1},
        "lang_config": {k: lang[k] for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                              "num_attention_heads", "max_position_embeddings", "bos_token_id",
                                              "eos_token_id", "pad_token_id", "tie_word_embeddings")},
        "cross_attn_every_n_layers": 1,
        "perceiver": {"depth": 1, "dim_head": 16, "heads": 2, "num_latents": 8, "ff_mult": 2},
        "cross_attn": {"dim_head": 16, "heads": 2, "ff_mult": 2},
    }
    torch.manual_seed(seed)
    model = build_flamingo(config, tok)
    save_model(model, str(out / "model.safetensors"))  # de-duplicates the mixin's shared parameters
    (out / "flamingo_config.json").write_text(json.dumps(config, indent=1))
    tiny_clip_image_processor(32).save_pretrained(out)
    (out / "lvlm.json").write_text(json.dumps({"family": "flamingo"}))
    return out


# ----------------------------------------------------------------------------- loading
def load_lvlm(cfg, device: str | torch.device = "cpu", precision: str = "fp32") -> LVLMAdapter:
    """Load the LVLM named by an ``infer_model`` config node.

    ``cfg.family`` picks the adapter; ``cfg.model_path`` is a hub id or a local folder (a tiny model
    from ``build_tiny_*`` or a downloaded checkpoint). Offline misses become one-line errors.
    """
    device = torch.device(device)
    family, path = str(cfg.family), str(cfg.model_path)
    precision = str(precision) if device.type == "cuda" else "fp32"
    trust = bool(cfg.get("trust_remote_code", False))
    try:
        if family == "idefics":
            from transformers import AutoTokenizer, IdeficsForVisionText2Text, IdeficsImageProcessor

            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            model = IdeficsForVisionText2Text.from_pretrained(path, torch_dtype=dtype).to(device)
            tok_path = cfg.get("tokenizer_path") or path
            # a local folder without tokenizer.json (our tiny models) needs the slow SentencePiece class
            slow = Path(tok_path).is_dir() and not (Path(tok_path) / "tokenizer.json").is_file()
            tok = AutoTokenizer.from_pretrained(tok_path, use_fast=not slow)
            return IdeficsAdapter(model, tok, IdeficsImageProcessor.from_pretrained(path), device, precision)
        if family == "flamingo":
            return _load_flamingo(cfg, path, device, precision, trust)
    except OSError as e:
        raise VlreproError(f"cannot load LVLM {path!r}: {str(e).splitlines()[0]}",
                           fix="give a local folder in infer_model.model_path, or allow hub downloads (unset HF_HUB_OFFLINE)") from None
    raise VlreproError(f"unknown infer_model.family {family!r}", fix="use flamingo or idefics")


def _load_flamingo(cfg, path: str, device, precision: str, trust: bool) -> FlamingoAdapter:
    from safetensors.torch import load_model
    from transformers import AutoTokenizer, CLIPImageProcessor

    local = Path(path)
    if (local / "flamingo_config.json").is_file():  # a config-built model (tiny, or converted)
        tok = AutoTokenizer.from_pretrained(local, use_fast=False)
        model = build_flamingo(json.loads((local / "flamingo_config.json").read_text()), tok)
        load_model(model, str(local / "model.safetensors"), strict=True)
        transform = _clip_tensor_transform(CLIPImageProcessor.from_pretrained(local))
        return FlamingoAdapter(model.to(device), tok, transform, device, precision)
    # a released OpenFlamingo checkpoint (spec §2): open_flamingo's own factory + checkpoint.pt
    if not trust:
        raise VlreproError(f"OpenFlamingo {path!r} needs the MPT remote code", fix="pass infer_model.trust_remote_code=true to allow it")
    from open_flamingo import create_model_and_transforms

    model, transform, tok = create_model_and_transforms(
        clip_vision_encoder_path="ViT-L-14", clip_vision_encoder_pretrained="openai",
        lang_encoder_path=str(cfg.lang_encoder_path), tokenizer_path=str(cfg.tokenizer_path),
        cross_attn_every_n_layers=int(cfg.cross_attn_every_n_layers))
    ckpt = Path(str(cfg.get("checkpoint_path") or path)) / "checkpoint.pt"
    if not ckpt.is_file():
        raise VlreproError(f"missing OpenFlamingo checkpoint {ckpt}", fix="download openflamingo/<hf_root> into CHECKPOINT_PATH")
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True), strict=False)
    tok.padding_side = "left"
    if tok.pad_token is None or tok.pad_token == "<PAD>":
        tok.pad_token = tok.eos_token
    return FlamingoAdapter(model.to(device), tok, transform, device, precision)
