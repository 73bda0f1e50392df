"""`vlrepro-sophon`: the paper's verbs on the shared command-line contract (DESIGN.md)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vlrepro.shared.paper_cli import Verb, run_paper_cli

from . import PAPER

#: the seed scripts' argparse spellings (train.py / model_cap.py flags) -> config keys
TRAIN_FLAGS = {f"--{k}": k for k in (
    "model_name_or_path", "version", "data_path", "image_folder", "vision_tower", "mm_projector_type",
    "pretrain_mm_mlp_adapter", "mm_vision_select_layer", "mm_use_im_start_end", "mm_use_im_patch_token",
    "image_aspect_ratio", "group_by_modality_length", "bf16", "tf32", "num_train_epochs", "max_steps",
    "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "weight_decay", "warmup_ratio",
    "lr_scheduler_type", "logging_steps", "save_strategy", "save_steps", "save_total_limit", "model_max_length",
    "gradient_checkpointing", "dataloader_num_workers", "lazy_preprocess", "report_to", "deepspeed", "sq_r",
    "lora_enable", "lora_r", "lora_alpha", "mm_projector_lr", "vision_tower_lr", "vit_lora_enable", "tune_mm_mlp_adapter")}
TRAIN_FLAGS["--output_dir"] = "out_dir"
EVAL_FLAGS = {"--model-path": "model_path", "--model-base": "model_base", "--conv-mode": "conv_mode",
              "--version": "conv_mode", "--sq": "sq", "--n_shot": "n_shot", "--max_new_tokens": "max_new_tokens",
              "--max_words": "max_words", "--answers-file": "out_dir", "--image-folder": "coco_root"}


def _train(cfg):
    from .train import train_verb

    return train_verb(cfg)


def _eval(cfg):
    from .evaluate import eval_verb

    return eval_verb(cfg)


def _smoke(cfg):
    from .smoke import smoke_verb

    return smoke_verb(cfg)


def _demo(cfg):
    from .demo import demo_verb

    return demo_verb(cfg)


VERBS: list[Verb] = [
    Verb("smoke", "whole pipeline on a tiny model + mini data: pretrain, SQ finetune, caption eval -> results.json", _smoke),
    Verb("pretrain", "stage 1: align the projector (plain template, projector only)", _train, flags=TRAIN_FLAGS),
    Verb("finetune", "stage 2: self-questioning instruction tuning (v1_sq, LoRA + projector)", _train, flags=TRAIN_FLAGS),
    Verb("train", "either stage by preset (default finetune; experiment=pretrain_7b|finetune_lora_7b|pretrain_13b|finetune_lora_13b)", _train, flags=TRAIN_FLAGS),
    Verb("eval", "captioning / VQAv2 / ScienceQA / POPE evaluation, greedy (task=...)", _eval, flags=EVAL_FLAGS),
    Verb("demo", "Gradio chat with image upload (127.0.0.1 unless --host is given)", _demo,
         flags={**EVAL_FLAGS, "--host": "host", "--port": "port"}),  # LLaVA gradio_web_server spellings
]


def main(argv: Sequence[str] | None = None) -> int:
    return run_paper_cli(dist="vlrepro-sophon", paper=PAPER, config_module="vlrepro.sophon.configs", verbs=VERBS, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
