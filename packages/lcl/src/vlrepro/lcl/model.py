"""The Shikra / LLaVA-v1 architecture that LCL fine-tunes (spec §1), under our own model type.

    image (white expand-to-square, CLIP preprocessing)          [N, 3, 224, 224]
      -> CLIP ViT-L/14, hidden_states[-2], CLS dropped           [N, 256, 1024]
      -> mm_projector: one nn.Linear(1024, 4096) with bias       [N, 256, 4096]
      -> spliced into the LLaMA token embeddings at the 256 ``<im_patch>`` positions that follow each
         ``<im_start>`` (image k of a sample fills the k-th ``<im_start> … <im_end>`` block)
      -> LLaMA decoder -> lm_head -> next-token cross-entropy (labels -100 are ignored)

The released checkpoint ``ISEKAI-Portal/LCL_2WAY_WEIGHT`` says ``model_type: "llava"``, which newer
transformers releases own for a different architecture (2-layer GELU projector, no im_start/end).
We therefore register the private type ``lcl_shikra`` and read the release by explicit class +
key remap (:func:`load_released_checkpoint`), never through ``AutoConfig`` on ``llava``.

The state-dict keys of the language side equal the release's (``model.embed_tokens``,
``model.layers.*``, ``model.norm``, ``model.mm_projector``, ``lm_head``); unlike the original
(which hid the CLIP tower in a Python list for FSDP), the vision tower is a real, frozen submodule
``vision_tower.*`` so our own checkpoints are self-contained safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.clip.modeling_clip import CLIPEncoder
from transformers.models.llama.modeling_llama import LlamaModel
from vlrepro.shared.errors import MalformedFileError, MissingFileError, VlreproError
from vlrepro.shared.images import expand_to_square

MODEL_TYPE = "lcl_shikra"
IMAGE_PLACEHOLDER = "<image>"
IM_PATCH = "<im_patch>"
IM_START = "<im_start>"
IM_END = "<im_end>"
IGNORE_INDEX = -100
RELEASED_VISION_TOWER = "openai/clip-vit-large-patch14"


class LCLConfig(LlamaConfig):
    """LLaMA config + the Shikra multimodal fields (names as in the released ``config.json``).

    ``vision_config`` is a ``CLIPVisionConfig`` dict; ``mm_vision_tower`` (hub id or folder) is where
    the CLIP weights come from when a checkpoint does not carry them (the release does not).
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        vision_config: dict | None = None,
        mm_vision_tower: str | None = None,
        mm_vision_select_layer: int = -2,
        mm_hidden_size: int | None = None,
        mm_use_im_start_end: bool = True,
        image_token_len: int | None = None,
        im_patch_token: int | None = None,
        im_start_token: int | None = None,
        im_end_token: int | None = None,
        freeze_vision_tower: bool = True,
        **kwargs: Any,
    ):
        if isinstance(vision_config, CLIPVisionConfig):
            vision_config = vision_config.to_dict()
        self.vision_config = dict(vision_config or CLIPVisionConfig().to_dict())
        self.mm_vision_tower = mm_vision_tower
        self.mm_vision_select_layer = mm_vision_select_layer
        vc = self.clip_vision_config
        self.mm_hidden_size = mm_hidden_size or vc.hidden_size
        # 224 px / patch 14 -> 16 x 16 = 256 patch tokens per image (spec §1)
        self.image_token_len = image_token_len or (vc.image_size // vc.patch_size) ** 2
        self.mm_use_im_start_end = mm_use_im_start_end
        self.im_patch_token = im_patch_token
        self.im_start_token = im_start_token
        self.im_end_token = im_end_token
        self.freeze_vision_tower = freeze_vision_tower
        kwargs.pop("model_type", None)  # a LlamaConfig dict says "llama"; ours is always lcl_shikra
        super().__init__(**kwargs)

    @property
    def clip_vision_config(self) -> CLIPVisionConfig:
        cfg = dict(self.vision_config)
        cfg.pop("model_type", None)
        return CLIPVisionConfig(**cfg)


class LCLLlamaModel(LlamaModel):
    """LLaMA decoder plus the projector, kept under ``model.mm_projector`` as in the release."""

    config_class = LCLConfig

    def __init__(self, config: LCLConfig):
        super().__init__(config)
        self.mm_projector = nn.Linear(config.mm_hidden_size, config.hidden_size)


class LCLPreTrainedModel(PreTrainedModel):
    config_class = LCLConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LlamaDecoderLayer", "CLIPEncoderLayer"]
    _keys_to_ignore_on_load_unexpected = [r"model\.vision_tower\.", r"rotary_emb\.inv_freq"]

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    def _set_gradient_checkpointing(self, module: nn.Module, value: bool = False) -> None:
        # the LLaMA decoder always; the CLIP encoder only when it is trained (a frozen tower runs
        # without autograd, where checkpointing would only re-run it)
        if isinstance(module, LlamaModel) or (isinstance(module, CLIPEncoder) and not self.config.freeze_vision_tower):
            module.gradient_checkpointing = value


def splice_image_features(
    input_ids: torch.Tensor, inputs_embeds: torch.Tensor, image_features: torch.Tensor, im_patch_token: int
) -> torch.Tensor:
    """Write image features into the ``<im_patch>`` positions, image k of a sample into its k-th block.

    input_ids [B, T]; inputs_embeds [B, T, H]; image_features [N, P, H] ordered sample-major (sample
    0's images in prompt order, then sample 1's, …; samples may hold different numbers of images).
    The boolean-mask scatter walks positions in the same row-major order, so the k-th
    ``<im_start>…<im_end>`` block of the batch receives image k.
    """
    patch_mask = input_ids == im_patch_token  # [B, T]
    n_needed = int(patch_mask.sum())
    n_given = image_features.shape[0] * image_features.shape[1]
    if n_needed != n_given:
        raise ValueError(
            f"{n_needed} <im_patch> tokens in the batch but {image_features.shape[0]} images x "
            f"{image_features.shape[1]} patches = {n_given} features"
        )
    features = image_features.reshape(-1, image_features.shape[-1]).to(inputs_embeds.dtype)  # [N*P, H]
    return inputs_embeds.masked_scatter(patch_mask.unsqueeze(-1), features)


class LCLForCausalLM(LCLPreTrainedModel):
    """Shikra-architecture causal LM: frozen CLIP -> Linear projector -> LLaMA (spec §1)."""

    _tied_weights_keys: list[str] = []

    def __init__(self, config: LCLConfig):
        super().__init__(config)
        self.model = LCLLlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.vision_tower = CLIPVisionModel(config.clip_vision_config)
        self.post_init()
        if config.freeze_vision_tower:
            self.vision_tower.requires_grad_(False)

    # --- embedding accessors used by resize_token_embeddings
    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    # --- vision side
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [N, 3, H, W] -> projected patch features [N, P, hidden] (layer -2, CLS dropped)."""
        tower_dtype = next(self.vision_tower.parameters()).dtype
        with torch.set_grad_enabled(not self.config.freeze_vision_tower and torch.is_grad_enabled()):
            out = self.vision_tower(pixel_values.to(tower_dtype), output_hidden_states=True)
            patches = out.hidden_states[self.config.mm_vision_select_layer][:, 1:]  # [N, P, Dv]
        return self.model.mm_projector(patches.to(self.model.mm_projector.weight.dtype))  # [N, P, H]

    def embed(self, input_ids: torch.Tensor, images: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with image features spliced in.

        images: [B, S, 3, H, W] (episodes, S images per sample), [B, 3, H, W] (one image each) or
        [N, 3, H, W] with N = all images of the batch in order (samples with different shot counts).
        """
        inputs_embeds = self.model.embed_tokens(input_ids)  # [B, T, H]
        if images is None:
            if self.training:
                # text-only batch: touch the projector with a zero so FSDP/DDP see a gradient (spec §1)
                dummy = self.model.mm_projector(inputs_embeds.new_zeros(1, self.config.mm_hidden_size))
                inputs_embeds = inputs_embeds + 0.0 * dummy.sum()
            return inputs_embeds
        flat = images.flatten(0, 1) if images.dim() == 5 else images  # [N, 3, H, W]
        features = self.encode_images(flat)  # [B*S, P, H]
        return splice_image_features(input_ids, inputs_embeds, features, self.config.im_patch_token)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool = True,
        **_: Any,
    ) -> CausalLMOutputWithPast:
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, images if past_key_values is None else None)
        if position_ids is None and attention_mask is not None:
            # left padding (eval) must not shift positions: count only real tokens
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            if past_key_values is not None:
                position_ids = position_ids[:, -inputs_embeds.shape[1]:]
        out = self.model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, use_cache=use_cache, return_dict=True,
        )
        logits = self.lm_head(out.last_hidden_state)  # [B, T, V]
        loss = None
        if labels is not None:
            loss = causal_lm_loss(logits, labels)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values)

    @torch.no_grad()
    def greedy_generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        images: torch.Tensor | None,
        max_new_tokens: int,
        eos_token_id: int,
        pad_token_id: int,
    ) -> torch.Tensor:
        """Greedy decoding (num_beams=1, use_cache) over left-padded prompts; returns only new tokens [B, <=max_new]."""
        out = self(input_ids=input_ids, attention_mask=attention_mask, images=images, use_cache=True)
        past = out.past_key_values
        next_tok = out.logits[:, -1].argmax(-1)  # [B]
        finished = torch.zeros_like(next_tok, dtype=torch.bool)
        generated: list[torch.Tensor] = []
        mask = attention_mask
        for _ in range(max_new_tokens):
            next_tok = torch.where(finished, torch.full_like(next_tok, pad_token_id), next_tok)
            generated.append(next_tok)
            finished |= next_tok == eos_token_id
            if bool(finished.all()):
                break
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            step = self(
                inputs_embeds=self.model.embed_tokens(next_tok[:, None]), attention_mask=mask,
                past_key_values=past, use_cache=True,
            )
            past = step.past_key_values
            next_tok = step.logits[:, -1].argmax(-1)
        return torch.stack(generated, dim=1) if generated else input_ids.new_zeros(input_ids.shape[0], 0)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose label is not -100 (shift by one)."""
    shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])  # [B*(T-1), V]
    shift_labels = labels[:, 1:].reshape(-1)  # [B*(T-1)]
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX)


AutoConfig.register(MODEL_TYPE, LCLConfig)
AutoModelForCausalLM.register(LCLConfig, LCLForCausalLM)


# ----------------------------------------------------------------------------- tokens and pixels


def add_image_tokens(tokenizer, model: LCLForCausalLM | None = None) -> dict[str, int]:
    """Add ``<im_patch>``, ``<im_start>``, ``<im_end>`` (vocab 32000 -> 32003) and resize the model.

    The start/end rows of the input and output embeddings are set to the mean of the old rows;
    the patch row is never read (its embedding is always overwritten by image features).
    """
    tokenizer.add_tokens([IM_PATCH], special_tokens=True)
    tokenizer.add_tokens([IM_START, IM_END], special_tokens=True)
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in (IM_PATCH, IM_START, IM_END)}
    if model is not None:
        old = model.get_input_embeddings().weight.shape[0]
        model.resize_token_embeddings(len(tokenizer))
        n_new = len(tokenizer) - old
        if n_new > 0:
            with torch.no_grad():
                for emb in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
                    emb[-n_new:] = emb[:-n_new].mean(dim=0, keepdim=True)
        model.config.im_patch_token = ids[IM_PATCH]
        model.config.im_start_token = ids[IM_START]
        model.config.im_end_token = ids[IM_END]
    return ids


def expand2square(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Pad to a centred square with a white background (Shikra's ``Expand2square``)."""
    return expand_to_square(img, background)


def preprocess_images(images: list[Image.Image], processor: CLIPImageProcessor) -> torch.Tensor:
    """PIL images -> [N, 3, H, W] after white expand-to-square and CLIP resize/crop/normalise."""
    squares = [expand2square(im.convert("RGB")) for im in images]
    return processor(images=squares, return_tensors="pt")["pixel_values"]


# ----------------------------------------------------------------------------- loading


def load_lcl(path: str | Path, *, torch_dtype: torch.dtype | None = None, vision_tower: str | None = None):
    """Load model + tokenizer + image processor from one of OUR checkpoints (or the release).

    A folder whose ``config.json`` says ``model_type: llava`` is the released LCL_2WAY_WEIGHT layout
    and goes through :func:`load_released_checkpoint` (its CLIP tower comes from ``vision_tower``,
    default ``openai/clip-vit-large-patch14``); our checkpoints carry their tower and ignore it.
    Offline misses become one-line errors.
    """
    from transformers import AutoTokenizer

    p = Path(str(path)).expanduser()
    cfg_file = p / "config.json"
    if p.is_dir() and cfg_file.is_file():
        try:
            raw = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as e:
            raise MalformedFileError(f"checkpoint config is not valid JSON: {cfg_file} ({e})") from None
        if raw.get("model_type") == "llava":
            return load_released_checkpoint(p, torch_dtype=torch_dtype, vision_tower=vision_tower)
    elif not p.exists() and (str(path).startswith((".", "/", "~")) or p.suffix):
        raise MissingFileError(f"checkpoint folder not found: {p}", fix="pass model_args.model_name_or_path=<folder>")
    try:
        model = LCLForCausalLM.from_pretrained(str(path), torch_dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=False)
        processor = CLIPImageProcessor.from_pretrained(str(path))
    except OSError as e:
        raise VlreproError(
            f"cannot load LCL checkpoint {path!r}: {str(e).splitlines()[0]}",
            fix="pass a local folder (save_pretrained output or LCL_2WAY_WEIGHT download); hub ids need network (HF_HUB_OFFLINE unset)",
        ) from None
    return model, tokenizer, processor


def _released_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Read the release's sharded ``pytorch_model-*.bin`` (or safetensors) with ``weights_only=True``."""
    index = folder / "pytorch_model.bin.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "pytorch_model.bin").is_file():
        shards = ["pytorch_model.bin"]
    elif (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    else:
        raise MissingFileError(f"no weights in {folder} (expected pytorch_model.bin.index.json + shards)",
                               fix="download ISEKAI-Portal/LCL_2WAY_WEIGHT completely")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        f = folder / shard
        if not f.is_file():
            raise MissingFileError(f"missing weight shard {f}", fix="download ISEKAI-Portal/LCL_2WAY_WEIGHT completely")
        state.update(torch.load(f, map_location="cpu", weights_only=True))
    return state


def remap_released_key(key: str) -> str | None:
    """Released key -> our key (identity for the LLM and projector; the CLIP tower is not in the release)."""
    if key.startswith("model.vision_tower."):
        return None  # some Shikra dumps carry a stale tower copy; the tower comes from mm_vision_tower
    if key.endswith("rotary_emb.inv_freq"):
        return None  # a buffer recomputed at init
    return key


def load_released_checkpoint(
    folder: str | Path, *, vision_tower: str | None = None, torch_dtype: torch.dtype | None = None
):
    """Load the released ``LCL_2WAY_WEIGHT`` folder (model_type ``llava``, sharded ``.bin``).

    ``mm_vision_tower`` in the release is a SenseTime cluster path; it is replaced by
    ``vision_tower`` (default ``openai/clip-vit-large-patch14``). Returns (model, tokenizer, processor).
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text())
    tower = vision_tower or RELEASED_VISION_TOWER
    try:
        clip = CLIPVisionModel.from_pretrained(tower, torch_dtype=torch_dtype)
        processor = CLIPImageProcessor.from_pretrained(tower)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), use_fast=False)
    except OSError as e:
        raise VlreproError(f"cannot load the vision tower {tower!r} or the tokenizer of {folder}: {str(e).splitlines()[0]}",
                           fix="pass model_args.vision_tower=<local CLIP folder> or allow hub downloads") from None
    keep = {k: v for k, v in raw.items() if k not in ("model_type", "architectures", "transformers_version", "_name_or_path")}
    keep.update(vision_config=clip.config.to_dict(), mm_vision_tower=tower)
    # the release's bos/eos/pad ids (0/1/-1) are stale; the tokenizer's are what the model saw
    keep.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id or 0)
    config = LCLConfig(**keep)
    for name, attr in ((IM_PATCH, "im_patch_token"), (IM_START, "im_start_token"), (IM_END, "im_end_token")):
        setattr(config, attr, tokenizer.convert_tokens_to_ids(name))
    model = LCLForCausalLM(config)
    state = {}
    for k, v in _released_state_dict(folder).items():
        new = remap_released_key(k)
        if new is not None:
            state[new] = v
    missing, unexpected = model.load_state_dict(state, strict=False)
    # the CLIP tower comes from mm_vision_tower; rotary ``inv_freq`` buffers are recomputed at init
    # (persistent in transformers 4.29-4.31, non-persistent later: releases may carry them or not)
    missing = [k for k in missing if not k.startswith("vision_tower.") and not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise MalformedFileError(f"{folder} does not have the LCL layout: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.vision_tower.load_state_dict(clip.state_dict())
    if torch_dtype is not None:
        model.to(torch_dtype)
    return model.eval(), tokenizer, processor


def build_tiny_model(
    tokenizer, *, image_size: int = 32, patch_size: int = 8, seed: int = 0, **llama_overrides: Any
) -> LCLForCausalLM:
    """A tiny random LCL model of the real architecture (tests, smoke): tiny CLIP + tiny LLaMA.

    ``tokenizer`` must already hold the three image tokens (:func:`add_image_tokens`).
    """
    from vlrepro.shared.testing import tiny_clip_vision_config, tiny_llama_config

    torch.manual_seed(seed)
    llama = tiny_llama_config(vocab_size=len(tokenizer), **llama_overrides)
    vision = tiny_clip_vision_config(image_size=image_size, patch_size=patch_size)
    config = LCLConfig(
        vision_config=vision.to_dict(), **llama.to_dict(),
        im_patch_token=tokenizer.convert_tokens_to_ids(IM_PATCH),
        im_start_token=tokenizer.convert_tokens_to_ids(IM_START),
        im_end_token=tokenizer.convert_tokens_to_ids(IM_END),
    )
    return LCLForCausalLM(config)
