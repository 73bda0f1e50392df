"""`vlrepro-ademvl`: the paper's verbs on the shared command-line contract (DESIGN.md)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vlrepro.shared.paper_cli import Verb, run_paper_cli

from . import PAPER

VERBS: list[Verb] = []


def main(argv: Sequence[str] | None = None) -> int:
    return run_paper_cli(dist="vlrepro-ademvl", paper=PAPER, config_module="vlrepro.ademvl.configs", verbs=VERBS, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
