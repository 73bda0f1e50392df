"""``vlrepro data check|make-mini|prepare``: wired into the ``vlrepro`` command by ``vlrepro.shared.cli``.

    vlrepro data check vqav2 [--root DATA_ROOT]          # every problem, exit 2 if any
    vlrepro data make-mini all --out DIR [--seed N] [--n N]
    vlrepro data prepare vqav2 [--form leverlm|live]     # Lever-LM's vqav2_hf (+ 10k subset) / LIVE's subdata
    vlrepro data prepare imagenet [--context 32]         # LCL's test100_pairs.jsonl

Errors are :class:`~vlrepro.shared.errors.VlreproError` (one line, exit 2, printed by the caller).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import VlreproError
from ..paths import data_root
from .check import DATASETS, check_dataset
from .mini import MINI_DATASETS, make_mini
from .prepare import prepare_imagenet, prepare_live_subdata, prepare_vqav2_hf

PREPARE = ("vqav2", "imagenet")


def add_arguments(verb: str, parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vlrepro data <verb>``."""
    if verb == "check":
        parser.add_argument("dataset", choices=[*DATASETS, "coco", "all"])
        parser.add_argument("--root", type=Path, default=None,
                            help="data root holding <dataset>/ folders (default: the dataset variables, "
                                 "then $VLREPRO_DATA)")
    elif verb == "make-mini":
        parser.add_argument("dataset", choices=[*MINI_DATASETS, "all"])
        parser.add_argument("--out", type=Path, default=None, help="data root to write into (default $VLREPRO_DATA)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--n", type=int, default=None, help="train items (val gets n // 2); default 32")
    elif verb == "prepare":
        parser.add_argument("dataset", choices=PREPARE)
        parser.add_argument("--root", type=Path, default=None,
                            help="the dataset folder (default $VQAV2_PATH / $IMAGENET_PATH, then $VLREPRO_DATA/<name>)")
        parser.add_argument("--form", choices=("leverlm", "live"), default="leverlm",
                            help="vqav2: leverlm = vqav2_hf/ + seeded val subset; live = annotation subdata")
        parser.add_argument("--questions", type=Path, default=None,
                            help="vqav2 --form live: LIVE's v2_mscoco_val2014_question_subdata.json")
        parser.add_argument("--out", type=Path, default=None, help="output folder (leverlm) or file (live, imagenet)")
        parser.add_argument("--subset-size", type=int, default=10_000, help="vqav2 leverlm: val subset size")
        parser.add_argument("--context", type=int, default=32, help="imagenet: context_samples per class")
        parser.add_argument("--seed", type=int, default=0)
    else:
        raise ValueError(f"unknown data verb {verb!r}")


def main(verb: str, args: argparse.Namespace) -> int:
    """Run ``vlrepro data <verb>``; 0 on success, 2 when ``check`` finds problems."""
    if verb == "check":
        return _check(args)
    if verb == "make-mini":
        out = args.out if args.out is not None else data_root()
        root = make_mini(args.dataset, out, seed=args.seed, n=args.n)
        print(f"wrote mini {args.dataset} (seed {args.seed}) under {root}; use VLREPRO_DATA={root}")
        return 0
    if verb == "prepare":
        return _prepare(args)
    raise VlreproError(f"unknown data verb {verb!r}")


def _check(args: argparse.Namespace) -> int:
    problems = check_dataset(args.dataset, args.root)
    for p in problems:
        print(p)
    if problems:
        print(f"{args.dataset}: {len(problems)} problem(s)")
        return 2
    print(f"ok: {args.dataset}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    if args.dataset == "vqav2" and args.form == "leverlm":
        for p in prepare_vqav2_hf(args.root, out_dir=args.out, subset_size=args.subset_size, seed=args.seed):
            print(f"wrote {p}")
    elif args.dataset == "vqav2":
        print(f"wrote {prepare_live_subdata(args.root, questions=args.questions, out=args.out)}")
    else:
        print(f"wrote {prepare_imagenet(args.root, out=args.out, context=args.context, seed=args.seed)}")
    return 0
