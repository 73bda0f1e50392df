"""Building, LoRA-wrapping, saving and loading SQ-LLaVA in the released checkpoint layouts (spec §1.4, §3).

Layouts:
- stage 1 (``pretrain``): ``mm_projector.safetensors`` (keys ``model.mm_projector.*``) + ``config.json``;
  the original's ``mm_projector.bin`` is read too (``torch.load(weights_only=True)``).
- stage 2 (``finetune``): ``adapter_model.safetensors`` + ``adapter_config.json`` (LLM LoRA, peft),
  ``non_lora_trainables.safetensors`` (keys ``base_model.model.model.mm_projector.*``; the
  original's ``.bin`` is read too), ``config.json``, ``Vit-lora/`` when ViT-LoRA is on.
- loading (``builder.py``): base LLM from ``model_base`` with the LoRA folder's config, then the
  non-LoRA trainables (strip ``base_model.`` then ``model.``), then ``PeftModel`` + merge, then the
  ViT adapter on the vision tower + merge. Folder names need not contain "llava"/"lora".
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from vlrepro.shared.errors import MissingFileError, VlreproError

from .model import MODEL_TYPE, SqLlavaConfig, SqLlavaForCausalLM, load_config

log = logging.getLogger(__name__)

#: LLM LoRA targets: every LLaMA Linear (q,k,v,o,gate,up,down), never lm_head/projector/vision
LLM_LORA_TARGETS = r"model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
#: ViT LoRA targets inside ``CLIPVisionModel``: q,k,v,out_proj,fc1,fc2 of every encoder block
VIT_LORA_TARGETS = r"vision_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])"
PROJECTOR_FILE = "mm_projector.safetensors"
NON_LORA_FILE = "non_lora_trainables.safetensors"
VIT_LORA_DIR = "Vit-lora"


# ---------------------------------------------------------------------------- state-dict files
def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write ``tensors`` as safetensors, atomically."""
    from safetensors.torch import save_file
    from vlrepro.shared.atomic import write_atomic

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return write_atomic(path, lambda tmp: save_file(clean, tmp, metadata={"format": "pt"}))


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read safetensors, or the original's ``.bin`` with ``weights_only=True``; a missing file is one line."""
    p = Path(path)
    if not p.is_file():
        alt = p.with_suffix(".bin") if p.suffix == ".safetensors" else p.with_suffix(".safetensors")
        if alt.is_file():
            p = alt
        else:
            raise MissingFileError(f"checkpoint file not found: {p}", fix="run the previous training stage or give the right folder")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    return torch.load(p, map_location="cpu", weights_only=True)


def projector_state(model: nn.Module, prefix: str = "model.mm_projector.") -> dict[str, torch.Tensor]:
    """The projector's tensors under the released key names (``model.mm_projector.*``)."""
    base = unwrap(model)
    return {prefix + k: v for k, v in base.model.mm_projector.state_dict().items()}


def load_projector(model: SqLlavaForCausalLM, path: str | Path) -> None:
    """Load ``mm_projector.{safetensors,bin}`` (``--pretrain_mm_mlp_adapter``): keys after ``mm_projector.``."""
    weights = load_tensors(path)
    sub = {k.split("mm_projector.", 1)[1]: v for k, v in weights.items() if "mm_projector." in k}
    if not sub:
        raise VlreproError(f"no mm_projector weights in {path}", fix="give the stage-1 output (mm_projector.safetensors)")
    model.model.mm_projector.load_state_dict(sub)


def load_non_lora_trainables(model: SqLlavaForCausalLM, path: str | Path) -> list[str]:
    """``builder.py``'s rule: strip ``base_model.`` then ``model.`` from each key, load non-strictly."""
    weights = load_tensors(path)
    fixed = {}
    for k, v in weights.items():
        k = k[len("base_model."):] if k.startswith("base_model.") else k
        k = k[len("model."):] if k.startswith("model.model.") else k
        fixed[k] = v
    result = model.load_state_dict(fixed, strict=False)
    if result.unexpected_keys:
        raise VlreproError(f"{path} holds keys this model lacks: {result.unexpected_keys[:3]}",
                           fix="check mm_projector_type in the config against the checkpoint")
    return sorted(fixed)


def unwrap(model: nn.Module) -> SqLlavaForCausalLM:
    """The ``SqLlavaForCausalLM`` inside a peft wrapper (or the model itself)."""
    if isinstance(model, SqLlavaForCausalLM):
        return model
    if hasattr(model, "get_base_model"):  # peft.PeftModel
        inner = model.get_base_model()
        if isinstance(inner, SqLlavaForCausalLM):
            return inner
    raise TypeError(f"not an SQ-LLaVA model: {type(model).__name__}")


# ---------------------------------------------------------------------------- building for training
def _from_pretrained(cls, path: str, **kwargs: Any):
    try:
        return cls.from_pretrained(path, **kwargs)
    except OSError as e:
        raise VlreproError(f"cannot load {path!r}: {str(e).splitlines()[0]}",
                           fix="give a local folder, or allow hub access (HF_HUB_OFFLINE unset) for a hub id") from None


def load_tokenizer(path: str, model_max_length: int = 2048):
    """Vicuna's slow LLaMA tokenizer, right padding, pad = unk (LLaVA's training setup)."""
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer, path, use_fast=False, model_max_length=model_max_length, padding_side="right")
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token
    return tok


def load_image_processor(path: str):
    from transformers import CLIPImageProcessor

    return _from_pretrained(CLIPImageProcessor, path)


def build_from_base(model_name_or_path: str, vision_tower: str, *, mm_projector_type: str = "cluster",
                    num_centers: int = 256, cluster_iters: int = 2, mm_vision_select_layer: int = -2,
                    image_aspect_ratio: str = "pad", torch_dtype: torch.dtype | None = None,
                    vit_lora_compat: bool = False) -> SqLlavaForCausalLM:
    """Vicuna (or our saved SQ-LLaVA) + a CLIP vision tower -> SQ-LLaVA, as ``initialize_vision_modules``.

    The LLM weights come from ``model_name_or_path``; the CLIP weights from ``vision_tower``
    (a ``CLIPModel`` or ``CLIPVisionModel`` checkpoint); the projector is freshly initialised.
    """
    from transformers import AutoConfig, CLIPVisionModel

    base_cfg = _from_pretrained(AutoConfig, model_name_or_path)
    clip = _from_pretrained(CLIPVisionModel, vision_tower)
    cfg_dict = {k: v for k, v in base_cfg.to_dict().items() if k not in ("model_type", "architectures", "transformers_version")}
    cfg_dict.update(mm_vision_tower=vision_tower, vision_config=clip.config.to_dict(), mm_projector_type=mm_projector_type,
                    num_centers=num_centers, cluster_iters=cluster_iters, mm_vision_select_layer=mm_vision_select_layer,
                    image_aspect_ratio=image_aspect_ratio, vit_lora_compat=vit_lora_compat)
    config = SqLlavaConfig(**cfg_dict)
    # the vision tower and projector are absent from a Vicuna checkpoint by design: silence that warning
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = _from_pretrained(SqLlavaForCausalLM, model_name_or_path, config=config, torch_dtype=torch_dtype)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.model.vision_tower.vision_tower.load_state_dict(clip.state_dict())
    # HF's _init_weights gives Linear N(0, 0.02); the original projector keeps torch's default init
    from .projector import init_like_torch_default

    init_like_torch_default(model.model.mm_projector)
    return model


def lora_config(r: int, alpha: int, dropout: float, targets: str, task_type: str | None = "CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none", target_modules=targets, task_type=task_type)


def apply_vit_lora(model: SqLlavaForCausalLM, r: int = 32, alpha: int = 64, dropout: float = 0.2) -> None:
    """Wrap the CLIP encoder with peft LoRA (q,k,v,out_proj,fc1,fc2) and make the tower differentiable.

    The original ran the tower under ``torch.no_grad`` so this adapter never trained (spec §1.4);
    here it trains unless ``config.vit_lora_compat`` is set. Blocks after the selected layer (-2)
    get no gradient: their output is never used.
    """
    from peft import get_peft_model

    tower = model.model.vision_tower
    tower.vision_tower = get_peft_model(tower.vision_tower, lora_config(r, alpha, dropout, VIT_LORA_TARGETS, task_type=None))
    tower.compat_no_grad = bool(model.config.vit_lora_compat)


def apply_llm_lora(model: SqLlavaForCausalLM, r: int = 128, alpha: int = 256, dropout: float = 0.05):
    """Wrap the LLM with peft LoRA on every LLaMA Linear (spec §1.4: r=128, alpha=256, dropout 0.05)."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config(r, alpha, dropout, LLM_LORA_TARGETS))


def lora_target_names(model: nn.Module) -> list[str]:
    """Names of the modules carrying a LoRA adapter (for tests)."""
    return sorted({n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n})


def save_stage2(model, out_dir: str | Path, config: SqLlavaConfig) -> None:
    """Write the released stage-2 layout: peft adapter, ``non_lora_trainables``, ``config.json``, ``Vit-lora/``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = unwrap(model)
    tower = base.model.vision_tower.vision_tower
    if hasattr(tower, "peft_config"):
        tower.save_pretrained(out / VIT_LORA_DIR, safe_serialization=True)
    model.save_pretrained(out, safe_serialization=True)
    save_tensors(projector_state(model, prefix="base_model.model.model.mm_projector."), out / NON_LORA_FILE)
    cfg = config.to_dict()
    (out / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")


def save_stage1(model: SqLlavaForCausalLM, out_dir: str | Path) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(projector_state(model), out / PROJECTOR_FILE)
    model.config.to_json_file(out / "config.json")


# ---------------------------------------------------------------------------- loading for inference
def is_lora_folder(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def load_pretrained_model(model_path: str | Path, model_base: str | Path | None = None, *,
                          vision_tower: str | None = None, torch_dtype: torch.dtype | None = None,
                          merge: bool = True) -> SqLlavaForCausalLM:
    """Load SQ-LLaVA for inference (``builder.load_pretrained_model``).

    - ``model_path`` a full SQ-LLaVA folder (``config.json`` + weights): ``from_pretrained``.
    - ``model_path`` a stage-2 LoRA folder (``adapter_config.json``): needs ``model_base`` (Vicuna or
      the ShareGPT4V LLM); the vision tower comes from the config's ``mm_vision_tower`` (or
      ``vision_tower``); then non-LoRA trainables, LLM LoRA (merged), ``Vit-lora`` (merged).
    - ``model_path`` a stage-1 folder (``mm_projector.*``): base + projector, no LoRA.
    The released configs' ``model_type: llava`` is remapped to ``sq_llava``.
    """
    path = Path(model_path)
    if not path.exists():
        raise MissingFileError(f"model folder not found: {path}", fix="train one (vlrepro-sophon finetune) or give a checkpoint folder")
    has_stage1 = (path / PROJECTOR_FILE).is_file() or (path / "mm_projector.bin").is_file()
    if not is_lora_folder(path) and not has_stage1:
        cfg = load_config(path)
        return _from_pretrained(SqLlavaForCausalLM, str(path), config=cfg, torch_dtype=torch_dtype).eval()
    if model_base is None:
        raise VlreproError(f"{path} holds adapters only; the base LLM is needed", fix="pass model_base=<Vicuna-v1.5 folder or id>")
    cfg = load_config(path)
    tower = vision_tower or cfg.mm_vision_tower
    model = build_from_base(str(model_base), str(tower), mm_projector_type=cfg.mm_projector_type,
                            num_centers=cfg.num_centers, cluster_iters=cfg.cluster_iters,
                            mm_vision_select_layer=cfg.mm_vision_select_layer, image_aspect_ratio=cfg.image_aspect_ratio,
                            torch_dtype=torch_dtype)
    if has_stage1 and not is_lora_folder(path):
        load_projector(model, path / PROJECTOR_FILE)
        return model.eval()
    load_non_lora_trainables(model, path / NON_LORA_FILE)
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(path))
    model = peft_model.merge_and_unload() if merge else peft_model
    vit_dir = path / VIT_LORA_DIR
    if vit_dir.is_dir():
        base = unwrap(model)
        vt = base.model.vision_tower
        vt.vision_tower = PeftModel.from_pretrained(vt.vision_tower, str(vit_dir)).merge_and_unload()
    return model.eval()


def remap_released_config(raw: dict) -> dict:
    """A released ``config.json`` dict with ``model_type`` ``llava`` -> ``sq_llava`` (pure function for tests)."""
    out = dict(raw)
    if out.get("model_type") in ("llava", "llava_llama"):
        out["model_type"] = MODEL_TYPE
    out["architectures"] = ["SqLlavaForCausalLM"]
    return out


def strip_released_prefix(key: str) -> str:
    """``base_model.model.model.mm_projector.c.weight`` -> ``model.mm_projector.c.weight`` (builder.py's rule)."""
    key = re.sub(r"^base_model\.", "", key)
    return key[len("model."):] if key.startswith("model.model.") else key
