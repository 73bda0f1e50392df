"""``vlrepro``: data checks and official-format metrics, shared by every paper.

    vlrepro data check|prepare|make-mini <dataset> [...]
    vlrepro eval vqa|caption|scienceqa|mme|lcl [...]

Each ``eval`` metric lives in ``vlrepro.shared.metrics.<name>`` and each data verb in
``vlrepro.shared.data.cli``; those modules expose ``add_arguments(parser)`` and
``main(args) -> int``. Errors are one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import VlreproError

EVAL_METRICS = {
    "vqa": "VQA accuracy, official VQA evaluation (or the OpenFlamingo variant)",
    "caption": "COCO caption metrics through pycocoevalcap (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D)",
    "scienceqa": "ScienceQA accuracy by subject, context and grade",
    "mme": "MME acc and acc+ per subtask; perception and cognition totals",
    "lcl": "LCL/ISEKAI accuracy rule",
}
DATA_VERBS = {
    "check": "list every missing or malformed file of a dataset, with how to get it",
    "make-mini": "write a small generated data set in the official format",
    "prepare": "preprocess a dataset where a paper needs it",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every vlrepro error
        raise VlreproError(f"{self.prog}: {message}", fix=f"see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vlrepro", description="vlrepro shared tools: data checks and metrics")
    parser.add_argument("--version", action="version", version=f"vlrepro-shared {__version__}")
    sub = parser.add_subparsers(dest="group", required=True, parser_class=_Parser)

    data = sub.add_parser("data", help="check, prepare or make small data sets in the official formats")
    data_sub = data.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    data_cli = importlib.import_module("vlrepro.shared.data.cli")
    for verb, help_ in DATA_VERBS.items():
        p = data_sub.add_parser(verb, help=help_, description=help_)
        data_cli.add_arguments(verb, p)
        p.set_defaults(_main=lambda args, _v=verb: data_cli.main(_v, args))

    ev = sub.add_parser("eval", help="score predictions with the official metrics")
    ev_sub = ev.add_subparsers(dest="metric", required=True, parser_class=_Parser)
    for metric, help_ in EVAL_METRICS.items():
        mod = importlib.import_module(f"vlrepro.shared.metrics.{metric}")
        p = ev_sub.add_parser(metric, help=help_, description=help_)
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args._main(args) or 0)
    except VlreproError as e:
        print(f"vlrepro: error: {e.one_line()}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
