"""`vlrepro-lcl`: the paper's verbs on the shared command-line contract (DESIGN.md)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vlrepro.shared.paper_cli import Verb, run_paper_cli

from . import PAPER
from . import configs as _configs  # noqa: F401  (registers the ${vlrepro_data:…} resolvers)


def _smoke(cfg):
    from .smoke import run_smoke

    return run_smoke(cfg)


def _train(cfg):
    from .runs import run_train

    return run_train(cfg)


def _eval(cfg):
    from .runs import run_eval

    return run_eval(cfg)


def _demo(cfg):
    from .demo import run_demo

    return run_demo(cfg)


#: the seed's HF TrainingArguments flags, accepted under the same spelling
_HF_FLAGS = {
    "--per_device_eval_batch_size": "training_args.per_device_eval_batch_size",
    "--per_device_train_batch_size": "training_args.per_device_train_batch_size",
    "--output_dir": "training_args.output_dir",
    "--num_train_epochs": "training_args.num_train_epochs",
    "--learning_rate": "training_args.learning_rate",
}

VERBS: list[Verb] = [
    Verb("smoke", "tiny LCL model on the mini ImageNet/ISEKAI data: train, eval, results.json", _smoke),
    Verb("train", "fine-tune on ImageNet-900 link-context episodes (experiment=lcl_train_2way_weight|lcl_train_mix1)",
         _train, flags=_HF_FLAGS),
    Verb("eval", "2-way LCL accuracy (experiment=lcl_eval_isekai_10|lcl_eval_isekai_pair|lcl_eval_imagenet100)",
         _eval, flags=_HF_FLAGS),
    Verb("demo", "Gradio app with the VQA and LCL tabs (binds 127.0.0.1 unless --server_name)", _demo,
         flags={"--model_path": "model_path", "--server_name": "server_name", "--server_port": "server_port",
                # --host/--port: the same spelling as vlrepro-sophon demo, for container users
                "--host": "server_name", "--port": "server_port",
                "--load_in_8bit": "load_in_8bit", "--load_in_4bit": "load_in_4bit"}),
]


#: store_true switches of the seed's demo.py: a bare ``--load_in_8bit`` means ``--load_in_8bit=true``
_BOOL_FLAGS = ("--load_in_8bit", "--load_in_4bit")
_BOOL_VALUES = {"true", "false", "1", "0", "yes", "no"}


def _expand_bool_flags(argv: Sequence[str]) -> list[str]:
    """``--load_in_8bit`` (bare, as the seed writes it) -> ``--load_in_8bit=true``; with a value it is kept."""
    out: list[str] = []
    args = list(argv)
    for i, tok in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        if tok in _BOOL_FLAGS and (nxt is None or nxt.lower() not in _BOOL_VALUES):
            out.append(f"{tok}=true")
        else:
            out.append(tok)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = _expand_bool_flags(sys.argv[1:] if argv is None else argv)
    return run_paper_cli(dist="vlrepro-lcl", paper=PAPER, config_module="vlrepro.lcl.configs", verbs=VERBS, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
