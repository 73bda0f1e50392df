"""Model adapters: IDEFICS (v1) and Idefics2, with LIVE's prompt format, hook places and generation.

Each adapter turns batches of interleaved item lists (``prompts.py``) into model inputs, returns
logits, generates answers (3 beams, <= 5 new tokens, spec §1.5), and names the modules LIVE hooks:

| lmm | HF class | hooked modules (spec §1.2) |
|---|---|---|
| idefics-9B | ``IdeficsForVisionText2Text`` | ``model.layers.<N>`` (decoder-layer output) |
| idefics2-8B-base | ``Idefics2ForConditionalGeneration`` | ``model.text_model.layers.<N>.mlp`` (MLP output) |

Processors are always called with keywords: their positional order changed in transformers 4.46.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from vlrepro.shared.errors import VlreproError

from .prompts import Item, idefics2_prompt_text, idefics_prompt_text

#: LIVE's generation settings (inference.py): beam search with 3 beams, at most 5 new tokens
DEFAULT_GENERATION = {"max_new_tokens": 5, "num_beams": 3, "length_penalty": 0.0, "min_new_tokens": 0, "do_sample": False}


class LMMAdapter:
    """Common interface of the two model families."""

    family: str = ""

    def __init__(self, model: nn.Module, processor: Any, *, name: str = "") -> None:
        self.model = model
        self.processor = processor
        self.name = name or self.family
        self.tokenizer = processor.tokenizer

    # -------------------------------------------------------------- architecture facts
    @property
    def text_config(self):
        return self.model.config

    @property
    def num_layers(self) -> int:
        return int(self.text_config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.text_config.hidden_size)

    def layer_names(self, layers: int | Sequence[int] = -1) -> list[str]:
        """Names of the hooked modules; ``-1`` means all decoder layers (``intervention_layer``)."""
        ids = range(self.num_layers) if layers == -1 else ([layers] if isinstance(layers, int) else list(layers))
        return [self.layer_format.format(i) for i in ids]

    layer_format: str = ""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -------------------------------------------------------------- prompts and inputs
    def prompt_text(self, items: Sequence[Item], *, add_eos_token: bool = False) -> str:
        raise NotImplementedError

    def encode(self, batch: Sequence[Sequence[Item]], *, add_eos_token: bool = False, padding_side: str = "right") -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def text_length(self, items: Sequence[Item]) -> int:
        """Token count of an item list as the model sees it (BOS included; no images processed)."""
        raise NotImplementedError

    def logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Forward pass; (B, T, V) logits."""
        return self.model(**inputs, use_cache=False).logits

    @torch.no_grad()
    def generate(self, batch: Sequence[Sequence[Item]], **generation: Any) -> list[str]:
        """Decode answers for a batch of prompts (left padding); only the new tokens, special tokens skipped."""
        inputs = self.encode(batch, padding_side="left")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        kwargs = {**DEFAULT_GENERATION, **generation}
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        out = self.model.generate(**inputs, **kwargs)  # (B, T + new)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    def _padding(self, side: str) -> None:
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be left or right, not {side!r}")
        self.tokenizer.padding_side = side


class IdeficsAdapter(LMMAdapter):
    """IDEFICS v1 (LLaMA + gated cross-attention). Hooks every ``IdeficsDecoderLayer`` output."""

    family = "idefics"
    layer_format = "model.layers.{}"

    def prompt_text(self, items: Sequence[Item], *, add_eos_token: bool = False) -> str:
        return idefics_prompt_text(items, bos=self.tokenizer.bos_token, eos=self.tokenizer.eos_token, add_eos_token=add_eos_token)

    def text_length(self, items):
        return len(self.tokenizer(self.prompt_text(items), add_special_tokens=False)["input_ids"])

    def encode(self, batch, *, add_eos_token=False, padding_side="right"):
        self._padding(padding_side)
        # keyword call: `prompts=` up to 4.45, `text=` from 4.46 (positional order changed)
        key = "prompts" if "prompts" in inspect.signature(self.processor.__call__).parameters else "text"
        enc = self.processor(**{key: [list(x) for x in batch]}, padding="longest", add_eos_token=add_eos_token, return_tensors="pt")
        return {k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_attention_mask")}


class Idefics2Adapter(LMMAdapter):
    """Idefics2 (SigLIP + perceiver + Mistral). Hooks every decoder layer's MLP output."""

    family = "idefics2"
    layer_format = "model.text_model.layers.{}.mlp"

    @property
    def text_config(self):
        return self.model.config.text_config

    def prompt_text(self, items: Sequence[Item], *, add_eos_token: bool = False) -> str:
        return idefics2_prompt_text(items, add_eos_token=add_eos_token, eos=self.tokenizer.eos_token)

    def text_length(self, items):
        # text-only processor call: expands <image> exactly as with images, adds BOS
        return len(self.processor(text=[self.prompt_text(items)])["input_ids"][0])

    def encode(self, batch, *, add_eos_token=False, padding_side="right"):
        self._padding(padding_side)
        texts = [self.prompt_text(items, add_eos_token=add_eos_token) for items in batch]
        images = [[x for x in items if not isinstance(x, str)] for items in batch]
        enc = self.processor(text=texts, images=images, padding="longest", return_tensors="pt")
        return {k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "pixel_attention_mask")}


ADAPTERS: dict[str, type[LMMAdapter]] = {"idefics": IdeficsAdapter, "idefics2": Idefics2Adapter}

_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
           "fp32": torch.float32, "float32": torch.float32}


def load_lmm(family: str, model_path: str | Path, *, name: str = "", precision: str = "fp32",
             device: str = "cpu", processor_kwargs: dict | None = None, trust_remote_code: bool = False) -> LMMAdapter:
    """Load a model + processor with ``from_pretrained`` (local folder or hub id, honours HF_HUB_OFFLINE)."""
    import transformers

    if family not in ADAPTERS:
        raise VlreproError(f"unknown lmm family {family!r}", fix=f"choose one of {sorted(ADAPTERS)}")
    if precision not in _DTYPES:
        raise VlreproError(f"unknown lmm precision {precision!r}", fix=f"choose one of {sorted(_DTYPES)}")
    model_cls = transformers.IdeficsForVisionText2Text if family == "idefics" else transformers.Idefics2ForConditionalGeneration
    proc_cls = transformers.IdeficsProcessor if family == "idefics" else transformers.AutoProcessor
    try:
        processor = proc_cls.from_pretrained(str(model_path), trust_remote_code=trust_remote_code, **(processor_kwargs or {}))
        model = model_cls.from_pretrained(str(model_path), torch_dtype=_DTYPES[precision], trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VlreproError(
            f"cannot load {family} weights from {model_path}: {first}",
            fix="download them (seed README: huggingface-cli download HuggingFaceM4/idefics-9b --local-dir "
            "$MODEL_CPK_DIR/idefics-9b) or point lmm.model_path at a local folder",
        ) from None
    model.to(device).eval()
    model.requires_grad_(False)
    return ADAPTERS[family](model, processor, name=name or family)
