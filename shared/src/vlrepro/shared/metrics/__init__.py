"""Official-format metrics shared by the vlrepro papers, re-implemented in plain Python 3.

One module per benchmark; each has a functional API (imported by the paper packages) and the
``add_arguments(parser)`` / ``main(args) -> int`` pair that ``vlrepro eval <metric>`` calls:

========== ==================================================== ===============================
module     functional API                                       reference implementation
========== ==================================================== ===============================
vqa        normalize_answer, vqa_accuracy,                      GT-Vision-Lab/VQA vqaEval.py;
           postprocess_vqa_generation                           OpenFlamingo vqa_metric.py
caption    caption_scores, ptb_tokenize                         pycocoevalcap 1.2 (COCOEvalCap)
scienceqa  parse_answer, scienceqa_accuracy                     ScienceQA/LLaVA/LaVIN scorers
mme        parse_yes_no, mme_scores                             MME eval_tool/calculation.py
lcl        extract_label, lcl_correct, lcl_accuracy             LCLComputeMetrics (ISEKAI)
========== ==================================================== ===============================

This ``__init__`` imports nothing heavy: ``vlrepro`` imports every metric module to build its
parser, so pycocoevalcap/Java are only touched when a caption metric actually runs.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic

__all__ = ["emit_result", "gc_paused"]


def emit_result(result: Any, out: str | Path | None = None) -> int:
    """Print ``result`` as one JSON object on stdout and, if asked, write it atomically to ``out``.

    The file is written before anything is printed, so a failure to write it (a directory in the
    way, no permission) surfaces as an error and exit status 1 rather than a half-reported run.
    """
    if out is not None:
        write_json_atomic(out, result)
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a block that allocates millions of small objects.

    Loading and scoring a full VQAv2 split creates ~5 M dicts, lists and tuples; each automatic
    generation-2 collection then walks all of them, which made ``json.load`` and scoring several
    times slower. JSON data has no reference cycles, so nothing is lost by collecting later.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
