"""`vlrepro-live`: the paper's verbs on the shared command-line contract (DESIGN.md).

    vlrepro-live smoke [--device cpu|cuda] [--out DIR]
    vlrepro-live train [experiment=vqav2_idefics_icv] [seed README overrides ...]
    vlrepro-live eval  run_name=vqav2_idefics_icv data_cfg/task/datasets=vqav2 lmm=idefics-9B [eval.methods=[icv,zero_shot,icl]]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from vlrepro.shared.paper_cli import Verb, run_paper_cli

from . import PAPER


def _smoke(cfg):
    from .smoke import run_smoke

    return run_smoke(cfg)


def _train(cfg):
    from .train import run_train

    return run_train(cfg)


def _eval(cfg):
    from .evaluate import run_eval

    return run_eval(cfg)


VERBS: list[Verb] = [
    Verb("smoke", "mini VQAv2 -> tiny IDEFICS -> train an ICV -> evaluate (ICV, zero-shot, ICL) -> results.json", _smoke),
    Verb("train", "train a LIVE in-context vector (the original train.py; experiment=<preset>)", _train),
    Verb("eval", "evaluate the ICV and the zero-shot / k-shot ICL baselines with VQA accuracy (the original inference.py)", _eval),
]


def main(argv: Sequence[str] | None = None) -> int:
    # quieter logs for a CLI; users can still raise them
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    return run_paper_cli(dist="vlrepro-live", paper=PAPER, config_module="vlrepro.live.configs", verbs=VERBS, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
