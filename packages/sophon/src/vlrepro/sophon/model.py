"""SQ-LLaVA: LLaVA-1.5's layout under our own model type ``sq_llava`` (spec §1).

    image (B, 3, 336, 336) -> CLIP ViT-L/14-336, hidden_states[-2] without CLS  (B, 576, 1024)
                           -> mm_projector (``cluster`` = prototype extractor + MLP)  (B, 576, H)
                           -> spliced into the Vicuna-v1.5 token embeddings at the ``<image>`` id -200

The module tree and parameter names follow the released checkpoints
(``model.mm_projector.*``, ``model.vision_tower.vision_tower.*``, ``model.layers.*``, ``lm_head``),
so ``mm_projector.bin`` and ``non_lora_trainables.bin`` load unchanged. The model type is
``sq_llava``, never ``llava``: transformers >= 4.36 owns ``llava`` (registering it again raises),
and :func:`load_config` remaps the released configs' ``model_type: llava``.

Differences from the v1.1 code the paper ran on (documented in the README):
- image features are spliced with explicit attention masks and right padding for training, left
  padding for batched generation (the original left-pads the mask in a way that only works for
  batch size 1 at generation);
- generation goes through ``generate(inputs_embeds=...)`` (the original patched ``forward``);
- the vision tower is differentiable when ViT-LoRA is on (the original always runs it under
  ``torch.no_grad``, so its ViT-LoRA never trained); ``vit_lora_compat=True`` restores that.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
)

from .projector import build_projector

IMAGE_TOKEN_INDEX = -200  # the ``<image>`` placeholder id; never a vocabulary entry
IGNORE_INDEX = -100
MODEL_TYPE = "sq_llava"


class SqLlavaConfig(LlamaConfig):
    """``LlamaConfig`` plus LLaVA's multimodal fields (names as in the released ``config.json``).

    Multimodal fields: ``mm_vision_tower`` (CLIP id or folder), ``vision_config`` (the CLIP vision
    config as a dict, so a saved model rebuilds its tower offline), ``mm_hidden_size``,
    ``mm_projector_type`` (``cluster``), ``mm_vision_select_layer`` (-2),
    ``mm_vision_select_feature`` (``patch`` drops CLS), ``num_centers``/``cluster_iters`` (256/2),
    ``num_latents`` (cross_attn), ``image_aspect_ratio`` (``pad``), ``vit_lora_compat``.
    """

    model_type = MODEL_TYPE

    def __init__(self, mm_vision_tower: str | None = None, vision_config: dict | None = None,
                 mm_hidden_size: int | None = None, mm_projector_type: str = "cluster",
                 mm_vision_select_layer: int = -2, mm_vision_select_feature: str = "patch",
                 num_centers: int = 256, cluster_iters: int = 2, num_latents: int = 256,
                 image_aspect_ratio: str = "pad", mm_use_im_start_end: bool = False,
                 vit_lora_compat: bool = False, **kwargs: Any):
        self.mm_vision_tower = mm_vision_tower
        self.vision_config = vision_config.to_dict() if hasattr(vision_config, "to_dict") else vision_config
        if mm_hidden_size is None and self.vision_config:
            mm_hidden_size = self.vision_config.get("hidden_size")
        self.mm_hidden_size = mm_hidden_size
        self.mm_projector_type = mm_projector_type
        self.mm_vision_select_layer = mm_vision_select_layer
        self.mm_vision_select_feature = mm_vision_select_feature
        self.num_centers = num_centers
        self.cluster_iters = cluster_iters
        self.num_latents = num_latents
        self.image_aspect_ratio = image_aspect_ratio
        self.mm_use_im_start_end = mm_use_im_start_end
        self.vit_lora_compat = vit_lora_compat
        super().__init__(**kwargs)


class CLIPVisionTower(nn.Module):
    """CLIP vision encoder returning the features of ``select_layer`` (-2), without CLS for ``patch``.

    Attribute name ``vision_tower`` matches the original wrapper, so its weights load as
    ``model.vision_tower.vision_tower.vision_model.*``.
    """

    def __init__(self, vision_config: CLIPVisionConfig, select_layer: int = -2, select_feature: str = "patch",
                 compat_no_grad: bool = False):
        super().__init__()
        self.vision_tower = CLIPVisionModel(vision_config)
        self.select_layer = select_layer
        self.select_feature = select_feature
        #: ``True`` reproduces the original's ``@torch.no_grad()`` forward (ViT-LoRA never trains)
        self.compat_no_grad = compat_no_grad

    @property
    def hidden_size(self) -> int:
        return self.vision_tower.config.hidden_size

    @property
    def num_patches(self) -> int:
        cfg = self.vision_tower.config
        return (cfg.image_size // cfg.patch_size) ** 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, S, S) -> features (B, P, D), P = (S/patch)^2 for ``patch``."""
        ctx = torch.no_grad() if self.compat_no_grad else contextlib.nullcontext()
        with ctx:
            dtype = next(self.vision_tower.parameters()).dtype
            out = self.vision_tower(images.to(dtype=dtype), output_hidden_states=True)
            feats = out.hidden_states[self.select_layer]  # (B, 1+P, D)
            if self.select_feature == "patch":
                feats = feats[:, 1:]
            elif self.select_feature != "cls_patch":
                raise ValueError(f"unknown mm_vision_select_feature {self.select_feature!r}")
        return feats


def _vision_config(config: SqLlavaConfig) -> CLIPVisionConfig:
    if config.vision_config:
        return CLIPVisionConfig(**config.vision_config)
    if config.mm_vision_tower:
        from vlrepro.shared.errors import VlreproError

        try:
            return CLIPVisionConfig.from_pretrained(config.mm_vision_tower)
        except OSError as e:
            raise VlreproError(f"cannot load the vision tower config {config.mm_vision_tower!r} ({str(e).splitlines()[0]})",
                               fix="give a local CLIP folder or allow hub access (HF_HUB_OFFLINE unset)") from None
    raise ValueError("SqLlavaConfig needs vision_config or mm_vision_tower")


class SqLlavaModel(LlamaModel):
    """The LLaMA decoder plus ``vision_tower`` and ``mm_projector`` (``LlavaMetaModel`` in the original)."""

    config_class = SqLlavaConfig

    def __init__(self, config: SqLlavaConfig):
        super().__init__(config)
        if config.vision_config or config.mm_vision_tower:
            self.init_vision_modules(config)

    def init_vision_modules(self, config: SqLlavaConfig) -> None:
        vcfg = _vision_config(config)
        config.vision_config = vcfg.to_dict()
        config.mm_hidden_size = vcfg.hidden_size
        self.vision_tower = CLIPVisionTower(vcfg, config.mm_vision_select_layer, config.mm_vision_select_feature,
                                            compat_no_grad=config.vit_lora_compat)
        self.mm_projector = build_projector(config.mm_projector_type, vcfg.hidden_size, config.hidden_size,
                                            num_centers=config.num_centers, cluster_iters=config.cluster_iters,
                                            num_latents=config.num_latents)


class SqLlavaForCausalLM(LlamaForCausalLM):
    """SQ-LLaVA for causal LM: ``forward(input_ids, images, labels)`` and ``generate(input_ids, images)``."""

    config_class = SqLlavaConfig
    # ``sim_beta`` is renamed ``sim_bias`` by from_pretrained's key fix and restored by a load hook
    # in the projector (see projector._restore_sim_beta): silence the two bogus warnings.
    _keys_to_ignore_on_load_unexpected = [r"mm_projector\.sim_bias"]
    _keys_to_ignore_on_load_missing = [r"mm_projector\.sim_beta"]

    def __init__(self, config: SqLlavaConfig):
        super().__init__(config)
        self.model = SqLlavaModel(config)
        self.post_init()

    def get_model(self) -> SqLlavaModel:
        return self.model

    # ------------------------------------------------------------------ images -> embeddings
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, S, S) -> projected visual tokens (N, L, H)."""
        feats = self.model.vision_tower(images)  # (N, P, D)
        proj = self.model.mm_projector
        return proj(feats.to(next(proj.parameters()).dtype))

    def prepare_multimodal_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                                  labels: torch.Tensor | None, images: torch.Tensor | list | None,
                                  padding_side: str = "right"):
        """Splice the visual tokens in place of each ``<image>`` id (-200).

        ``images`` holds one image per sample (LLaVA's collator gives text-only samples a blank
        image); sample b's ``<image>`` id becomes the L embeddings of image b with label -100. A
        sample without the id is embedded as text and its image is ignored. Padding tokens (``attention_mask == 0``) are dropped
        and the batch is re-padded on ``padding_side``.

        Returns ``(inputs_embeds (B, T', H), attention_mask (B, T'), labels (B, T') or None)``;
        T' = max over samples of (text length - n_images + n_images * L).
        """
        if isinstance(images, list):
            images = torch.stack(images) if images else None
        embed = self.model.embed_tokens
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        has_image = (input_ids == IMAGE_TOKEN_INDEX).any(dim=1)
        image_features = self.encode_images(images) if images is not None and has_image.any() else None
        seq_embeds, seq_labels = [], []
        for b in range(input_ids.shape[0]):
            keep = attention_mask[b].bool()
            ids = input_ids[b][keep]
            lab = labels[b][keep] if labels is not None else None
            positions = torch.where(ids == IMAGE_TOKEN_INDEX)[0].tolist()
            parts, part_labels, start = [], [], 0
            for pos in positions:
                parts.append(embed(ids[start:pos]))
                feats = image_features[b]  # (L, H)
                parts.append(feats.to(parts[-1].dtype))
                if lab is not None:
                    part_labels += [lab[start:pos], torch.full((feats.shape[0],), IGNORE_INDEX, dtype=lab.dtype, device=lab.device)]
                start = pos + 1
            parts.append(embed(ids[start:]))
            if lab is not None:
                part_labels.append(lab[start:])
            seq_embeds.append(torch.cat(parts))
            seq_labels.append(torch.cat(part_labels) if lab is not None else None)
        max_len = max(e.shape[0] for e in seq_embeds)
        hidden = seq_embeds[0].shape[-1]
        out_embeds = seq_embeds[0].new_zeros((len(seq_embeds), max_len, hidden))
        out_mask = torch.zeros((len(seq_embeds), max_len), dtype=attention_mask.dtype, device=input_ids.device)
        out_labels = torch.full((len(seq_embeds), max_len), IGNORE_INDEX, dtype=torch.long, device=input_ids.device) if labels is not None else None
        for b, e in enumerate(seq_embeds):
            n = e.shape[0]
            sl = slice(0, n) if padding_side == "right" else slice(max_len - n, max_len)
            out_embeds[b, sl] = e
            out_mask[b, sl] = 1
            if out_labels is not None:
                out_labels[b, sl] = seq_labels[b]
        return out_embeds, out_mask, out_labels

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.LongTensor | None = None, past_key_values=None,
                inputs_embeds: torch.FloatTensor | None = None, labels: torch.LongTensor | None = None,
                use_cache: bool | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, images: torch.FloatTensor | None = None,
                return_dict: bool | None = None, **kwargs: Any):
        if inputs_embeds is None and input_ids is not None and (input_ids == IMAGE_TOKEN_INDEX).any():
            inputs_embeds, attention_mask, labels = self.prepare_multimodal_inputs(input_ids, attention_mask, labels, images)
            input_ids = None
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               past_key_values=past_key_values, inputs_embeds=inputs_embeds, labels=labels,
                               use_cache=use_cache, output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states, return_dict=return_dict, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, images: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, **kwargs: Any):
        """Greedy/sampled generation from a prompt with ``<image>`` ids; returns only the new tokens.

        transformers 4.37 returns the new tokens (sometimes after a BOS) when given only
        ``inputs_embeds``; later releases return only the new tokens. :func:`strip_prompt_echo`
        normalises both.
        """
        if input_ids is not None and (input_ids == IMAGE_TOKEN_INDEX).any():
            embeds, mask, _ = self.prepare_multimodal_inputs(input_ids, attention_mask, None, images, padding_side="left")
            out = super().generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        elif input_ids is not None:
            embeds = self.model.embed_tokens(input_ids)
            mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            out = super().generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        else:
            out = super().generate(attention_mask=attention_mask, **kwargs)
        return strip_prompt_echo(out, self.config.bos_token_id)


def strip_prompt_echo(sequences: torch.Tensor, bos_token_id: int | None) -> torch.Tensor:
    """Drop a leading BOS column that some transformers releases put before generated tokens."""
    if bos_token_id is not None and sequences.shape[1] > 0 and bool((sequences[:, 0] == bos_token_id).all()):
        return sequences[:, 1:]
    return sequences


AutoConfig.register(MODEL_TYPE, SqLlavaConfig)
AutoModelForCausalLM.register(SqLlavaConfig, SqLlavaForCausalLM)


# ---------------------------------------------------------------------------- configs & loading
def load_config(path: str | Path, **overrides: Any) -> SqLlavaConfig:
    """Read a ``config.json`` of ours or of the release, remapping ``model_type: llava`` to ``sq_llava``.

    The released configs also carry ``architectures: [LlavaLlamaForCausalLM]`` and training-only
    keys (``tune_mm_mlp_adapter``, ``mm_projector_lr`` ...); they are kept as plain attributes.
    """
    from vlrepro.shared.errors import read_json

    cfg_path = Path(path) / "config.json" if Path(path).is_dir() else Path(path)
    raw = dict(read_json(cfg_path, what="model config"))
    raw["model_type"] = MODEL_TYPE
    raw["architectures"] = ["SqLlavaForCausalLM"]
    raw.update(overrides)
    return SqLlavaConfig(**{k: v for k, v in raw.items() if k not in ("transformers_version",)})


def tiny_sq_llava_config(vocab_size: int, *, image_size: int = 32, patch_size: int = 8,
                         mm_projector_type: str = "cluster", num_centers: int = 8, **overrides: Any) -> SqLlavaConfig:
    """A tiny SQ-LLaVA config built from the shared tiny CLIP-vision and Llama factories (spec §9)."""
    from vlrepro.shared.testing import tiny_clip_vision_config, tiny_llama_config

    llama = tiny_llama_config(vocab_size, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                              num_key_value_heads=4, max_position_embeddings=512).to_dict()
    for k in ("model_type", "architectures", "transformers_version"):
        llama.pop(k, None)
    vision = tiny_clip_vision_config(image_size=image_size, patch_size=patch_size).to_dict()
    kw = dict(llama, vision_config=vision, mm_vision_tower="tiny-clip", mm_projector_type=mm_projector_type,
              num_centers=num_centers, cluster_iters=2)
    kw.update(overrides)
    return SqLlavaConfig(**kw)


def real_config(size: str = "7b", mm_projector_type: str = "cluster") -> SqLlavaConfig:
    """The config of the released 7B/13B SQ-LLaVA (Vicuna-v1.5 + CLIP ViT-L/14-336), built offline."""
    dims = {"7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32),
            "13b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=40)}[size]
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu").to_dict()
    return SqLlavaConfig(vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5, vision_config=vision,
                         mm_vision_tower="openai/clip-vit-large-patch14-336", mm_projector_type=mm_projector_type, **dims)


def save_config_json(config: SqLlavaConfig, out_dir: str | Path) -> None:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "config.json").write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
