"""`vlrepro-ademvl`: the paper's verbs on the shared command-line contract (DESIGN.md).

The seed's argparse spellings work as written: ``--data_root /p`` (any seed flag) becomes
``data_root=/p``; ``--down_sample_num 256 64`` (nargs) becomes ``down_sample_num=[256,64]``;
store-true flags (``--no_cls``, ``--use_caption``, ``--cpu_load``, ``--gradient_checkpointing``)
become ``key=true``; the eval scripts' ``--model 7B`` means ``llm_model=7B`` (the README's flag,
which the original rejects). Launch training on several GPUs with
``torchrun --nproc_per_node N --no-python vlrepro-ademvl train …``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vlrepro.shared.paper_cli import Verb, run_paper_cli

from . import PAPER

#: seed flags that take one value -> config key (the same name)
_VALUE_KEYS = (
    "data_root", "clip", "clip_root", "caption_file", "llama_model_path", "llm_model", "max_seq_len", "batch_size",
    "accum_iter", "epochs", "warmup_epochs", "blr", "lr", "min_lr", "weight_decay", "adapter_dim", "hidden_proj",
    "alpha", "beta", "drop_ratio", "dataset", "prompt_format", "clip_grad", "resume", "log_dir", "num_workers",
    "adapter_path", "dtype",
)
_LIST_FLAGS = {"--down_sample_num": "down_sample_num"}
_BOOL_FLAGS = {"--no_cls": "no_cls", "--use_caption": "use_caption", "--cpu_load": "cpu_load",
               "--gradient_checkpointing": "gradient_checkpointing", "--pin_mem": None, "--no_pin_mem": None}
#: flags of the original accepted for compatibility with no effect here (torchrun/env:// handles them)
_IGNORED_VALUE_FLAGS = ("--local_rank", "--world_size", "--dist_url", "--start_epoch")

SEED_FLAGS: dict[str, str] = {f"--{k}": k for k in _VALUE_KEYS}
SEED_FLAGS["--output_dir"] = "out_dir"
EVAL_FLAGS = {**SEED_FLAGS, "--model": "llm_model"}


def normalize_seed_args(args: Sequence[str]) -> list[str]:
    """Rewrite the seed's nargs/store-true flags into ``key=value`` overrides (other tokens pass through)."""
    out: list[str] = []
    i = 0
    args = list(args)
    while i < len(args):
        tok = args[i]
        name = tok.split("=", 1)[0]
        if name in _LIST_FLAGS and "=" not in tok:
            values = []
            i += 1
            while i < len(args) and not args[i].startswith("-") and "=" not in args[i]:
                values.append(args[i])
                i += 1
            out.append(f"{_LIST_FLAGS[name]}=[{','.join(values)}]")
            continue
        if name in _LIST_FLAGS:
            out.append(f"{_LIST_FLAGS[name]}=[{tok.split('=', 1)[1]}]")
        elif tok in _BOOL_FLAGS:
            if _BOOL_FLAGS[tok]:
                out.append(f"{_BOOL_FLAGS[tok]}=true")
        elif name in _IGNORED_VALUE_FLAGS:
            if "=" not in tok:
                i += 1  # skip its value
        else:
            out.append(tok)
        i += 1
    return out


def _train(cfg):
    from .train import run_train

    return run_train(cfg)


def _eval(cfg):
    from .evaluate import run_eval

    return run_eval(cfg)


def _smoke(cfg):
    from .smoke import run_smoke

    return run_smoke(cfg)


VERBS: list[Verb] = [
    Verb("smoke", "end to end on mini ScienceQA with a tiny CLIP + tiny Meta-format LLaMA: train, eval, results.json", _smoke),
    Verb("train", "fine-tune ADEM-VL's adapters (experiment=sqa_7b|coco_caption_7b|instruction_7b|…_13b; torchrun for DDP)",
         _train, flags=SEED_FLAGS),
    Verb("eval", "evaluate: task=sqa|caption|mme (experiment=eval_sqa_7b|eval_caption_7b|eval_mme_7b|…_13b)",
         _eval, flags=EVAL_FLAGS),
]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("train", "eval"):
        argv = [argv[0], *normalize_seed_args(argv[1:])]
    return run_paper_cli(dist="vlrepro-ademvl", paper=PAPER, config_module="vlrepro.ademvl.configs", verbs=VERBS, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
