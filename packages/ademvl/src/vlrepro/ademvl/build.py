"""Building an ADEM-VL model from a config: LLaMA (Meta files), CLIP (transformers), adapters; and the data paths.

Paths follow the original's single ``--data_root`` layout when ``data_root`` is set
(``problems.json``, ``images/``, ``weights/``, ``coco_caption/``, ``all_data.json`` in one folder)
and the monorepo's per-dataset roots otherwise (``SCIENCEQA_PATH`` / ``$VLREPRO_DATA/scienceqa``,
``MODEL_CPK_DIR`` / ``$VLREPRO_DATA/weights``, …).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from vlrepro.shared.errors import VlreproError
from vlrepro.shared.paths import dataset_dir, root_dir

from .llama import load_llama
from .method import ADEMVL, AdemConfig

#: the original's CLIP names (OpenAI ``clip.load``) → transformers checkpoints of the same weights
CLIP_IDS = {
    "ViT-L/14": "openai/clip-vit-large-patch14",
    "ViT-L/14@336px": "openai/clip-vit-large-patch14-336",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-B/32": "openai/clip-vit-base-patch32",
}


def torch_dtype(cfg: DictConfig, device: torch.device) -> torch.dtype:
    """Frozen-weight dtype: ``auto`` = fp16 on CUDA (as the original), fp32 on CPU."""
    name = str(cfg.get("dtype", "auto"))
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    table = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
             "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise VlreproError(f"unknown dtype {name!r}", fix="use auto, fp32, fp16 or bf16")
    return table[name]


def resolve_device(cfg: DictConfig) -> torch.device:
    name = str(cfg.device)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VlreproError(f"device {name} asked for but CUDA is not available", fix="pass --device cpu")
    if name.startswith("cuda") and os.environ.get("LOCAL_RANK") is not None:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def weights_dir(cfg: DictConfig) -> Path:
    """``llama_model_path`` > ``<data_root>/weights`` > ``MODEL_CPK_DIR`` / ``$VLREPRO_DATA/weights``."""
    if cfg.get("llama_model_path"):
        return Path(str(cfg.llama_model_path)).expanduser()
    if cfg.get("data_root"):
        return Path(str(cfg.data_root)).expanduser() / "weights"
    return root_dir("weights")


def scienceqa_root(cfg: DictConfig) -> Path:
    return Path(str(cfg.data_root)).expanduser() if cfg.get("data_root") else dataset_dir("scienceqa")


def clip_source(cfg: DictConfig) -> tuple[str, str | None]:
    """(``from_pretrained`` id or folder, cache dir): ``clip_root`` holding a saved model wins, else it is the cache."""
    name = str(cfg.clip)
    name = CLIP_IDS.get(name, name)
    root = cfg.get("clip_root")
    if root and (Path(str(root)) / "config.json").is_file():
        return str(root), None
    return name, (str(root) if root else None)


def load_clip_vision(cfg: DictConfig, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """transformers' ``CLIPVisionModel.from_pretrained`` (a full CLIPModel folder works: its text tower is skipped)."""
    from transformers import CLIPVisionModel
    from transformers.utils import logging as hf_logging

    source, cache = clip_source(cfg)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused text-tower weights of a CLIPModel folder are expected
    try:
        model = CLIPVisionModel.from_pretrained(source, cache_dir=cache, torch_dtype=dtype)
    except OSError as e:
        raise VlreproError(f"cannot load CLIP {source!r} ({str(e).splitlines()[0]})",
                           fix="pass clip=<local folder> or clip_root=<folder saved with save_pretrained>; "
                               "offline runs need the weights in HF_HOME") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return model.vision_model.to(device)


def adem_config(cfg: DictConfig) -> AdemConfig:
    dsn = cfg.down_sample_num
    dsn = [int(dsn)] if isinstance(dsn, (int, str)) else [int(x) for x in dsn]
    return AdemConfig(alpha=float(cfg.alpha), beta=float(cfg.beta), drop_ratio=float(cfg.drop_ratio),
                      down_sample_num=tuple(dsn), hidden_proj=int(cfg.hidden_proj), adapter_dim=int(cfg.adapter_dim),
                      with_cls=not bool(cfg.no_cls))


def create_model(cfg: DictConfig, device: torch.device) -> ADEMVL:
    """LLaMA from ``<weights>/tokenizer.model`` + ``<weights>/<llm_model>/``, CLIP, then ADEM-VL's adapters.

    Frozen weights take ``torch_dtype``; trainable (``adapter``) parameters are fp32.
    """
    dtype = torch_dtype(cfg, device)
    load_device = torch.device("cpu") if cfg.get("cpu_load") else device
    llama, tokenizer = load_llama(weights_dir(cfg), str(cfg.llm_model), max_seq_len=int(cfg.max_seq_len),
                                  dtype=dtype, device=load_device)
    vision = load_clip_vision(cfg, dtype, load_device)
    try:
        model = ADEMVL(llama, vision, tokenizer, adem_config(cfg))
    except ValueError as e:
        raise VlreproError(str(e), fix="down_sample_num sizes must be squares no larger than CLIP's patch grid") from None
    if bool(cfg.get("gradient_checkpointing", False)):
        for block in model.llama.layers:
            block.gradient_checkpointing = True
    return model.to(device)


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
