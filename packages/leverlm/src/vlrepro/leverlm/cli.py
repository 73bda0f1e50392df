"""`vlrepro-leverlm`: the paper's verbs on the shared command-line contract (DESIGN.md).

    vlrepro-leverlm smoke                                   # generate -> train -> eval on embedded data
    vlrepro-leverlm generate task=caption dataset=coco2017 gpu_ids=[0,1,2,3] device=cuda
    vlrepro-leverlm train task=caption dataset=coco2017 train=query_img_icd_img_text
    vlrepro-leverlm eval task=caption dataset=coco2017 train=query_img_icd_img_text test_lever_lm=true
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vlrepro.shared.paper_cli import Verb, run_paper_cli

from . import PAPER


def _smoke(cfg):
    from .smoke import run_smoke

    return run_smoke(cfg)


def _generate(cfg):
    from .generate import run_generate

    run_generate(cfg)
    return 0


def _train(cfg):
    from .train import run_train

    run_train(cfg)
    return 0


def _eval(cfg):
    from .evaluate import run_eval

    run_eval(cfg)
    return 0


VERBS: list[Verb] = [
    Verb("smoke", "whole pipeline (generate -> train -> eval) on make_mini COCO with tiny random models", _smoke),
    Verb("generate", "build D_M (Lever-LM training data) by InfoScore beam search; sharded, resumable", _generate),
    Verb("train", "train Lever-LM (2-layer GPT-2 over ICD indices + CLIP features) on D_M", _train),
    Verb("eval", "ICL inference with Lever-LM configurations or RS/STTR/SITR/SIIR; CIDEr or VQA accuracy", _eval),
]


def main(argv: Sequence[str] | None = None) -> int:
    return run_paper_cli(dist="vlrepro-leverlm", paper=PAPER, config_module="vlrepro.leverlm.configs", verbs=VERBS, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
