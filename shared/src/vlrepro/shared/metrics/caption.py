"""COCO caption metrics through pycocoevalcap 1.2, without its packaging hazards.

``pycocoevalcap.eval.COCOEvalCap.evaluate()`` runs the PTB tokenizer on references and
predictions, then BLEU-1..4, METEOR, ROUGE-L, CIDEr (= CIDEr-D: sigma=6 length penalty,
clipping, x10, IDF from the evaluated references) and SPICE. :func:`caption_scores` produces the
same numbers under the same names (``Bleu_1..Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``,
``SPICE``; fractions, not x100), but:

* **Tokenizer.** ``PTBTokenizer.tokenize`` writes its input into a temporary file *inside the
  installed package directory* and runs ``java`` there, which fails on read-only or non-root
  installs (containers, shared venvs). :func:`ptb_tokenize` runs the same jar
  (``pycocoevalcap/tokenizer/stanford-corenlp-3.4.1.jar``, same class and flags
  ``-preserveLines -lowerCase``) on a file in a private temporary directory, then drops the same
  punctuation tokens. References and predictions go through one JVM instead of two (each line
  is tokenised on its own, so the output is the same).
* **BLEU, ROUGE-L, CIDEr** are pycocoevalcap's own scorers, called directly (BLEU with
  ``verbose=0`` so nothing is printed on stdout).
* **METEOR** is pycocoevalcap's jar and stdin protocol (``meteor-1.5.jar - - -stdio -l en
  -norm``, one ``SCORE`` line per image, one ``EVAL`` line), driven here with a watchdog: a JVM that
  dies or hangs (coco-caption #6/#17, salaniz #11/#15) becomes a one-line error after
  ``meteor_timeout`` seconds instead of a blocked ``readline``. It takes ~7 s to start; leave it
  out with ``metrics=("BLEU", "ROUGE_L", "CIDEr")``.
* **SPICE** runs only when asked. It needs Stanford CoreNLP 3.6.0, which pycocoevalcap downloads
  (~385 MB) on first use; vlrepro never downloads, so without those jars it is a clear error. It
  runs without SPICE's LMDB ``-cache`` (which lives in the package directory and needs lmdbjni),
  with temporary files in a private directory.

Scored images: those with a prediction (as the COCO caption examples set
``cocoEval.params['image_id'] = cocoRes.getImgIds()``). A predicted image without references is
an error; so are two predictions for one image (``COCOEvalCap`` would fail an assertion).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import MalformedFileError, VlreproError, read_json
from . import emit_result

__all__ = [
    "DEFAULT_METRICS",
    "caption_scores",
    "ptb_tokenize",
    "load_coco_captions",
    "add_arguments",
    "main",
]

DEFAULT_METRICS = ("BLEU", "METEOR", "ROUGE_L", "CIDEr")
_METRIC_ALIASES = {
    "bleu": "BLEU", "meteor": "METEOR", "rouge_l": "ROUGE_L", "rouge-l": "ROUGE_L", "rouge": "ROUGE_L",
    "cider": "CIDEr", "cider-d": "CIDEr", "spice": "SPICE",
}
# pycocoevalcap/tokenizer/ptbtokenizer.py PUNCTUATIONS: tokens removed after tokenisation.
PTB_PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
# The original only replaces "\n"; Java also ends a line at these, which would shift every
# following caption onto the wrong image, so they become spaces too.
# Vertical tab and form feed end a line for it too (measured on the 3.4.1 jar).
_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\v\f\u0085\u2028\u2029"})
_JAVA_FIX = "install a Java runtime (e.g. `apt-get install default-jre-headless`) or leave out METEOR/SPICE and use tokenize=False"


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise VlreproError("`java` not found on PATH: the PTB tokenizer, METEOR and SPICE of pycocoevalcap need it", fix=_JAVA_FIX)
    return java


def _pycocoevalcap_dir() -> Path:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise VlreproError("pycocoevalcap is not installed", fix="pip install pycocoevalcap==1.2")
    return Path(list(spec.submodule_search_locations)[0])


def _jar(*parts: str) -> Path:
    path = _pycocoevalcap_dir().joinpath(*parts)
    if not path.is_file():
        raise VlreproError(f"pycocoevalcap file missing: {path}", fix="reinstall pycocoevalcap==1.2")
    return path


# --------------------------------------------------------------------------------------------
# PTB tokenizer


def ptb_tokenize(captions: Mapping[Hashable, Sequence[str]], *, timeout: float = 600.0) -> dict[Hashable, list[str]]:
    """Tokenise captions like ``PTBTokenizer.tokenize``, without writing into the package.

    Args:
        captions: ``{key: [caption, ...]}`` (plain strings, not COCO annotation dicts).
        timeout: seconds before the Java process is killed.

    Returns:
        ``{key: [tokenised caption, ...]}``: lower-cased PTB tokens joined by single spaces, with
        the tokens in ``PTB_PUNCTUATIONS`` removed.
    """
    keys: list[Hashable] = []
    lines: list[str] = []
    for key, caps in captions.items():
        for cap in caps:
            if not isinstance(cap, str):
                raise MalformedFileError(f"caption of {key!r} is not a string: {cap!r:.80}")
            keys.append(key)
            lines.append(cap.translate(_LINE_BREAKS))
    out: dict[Hashable, list[str]] = {key: [] for key in captions}
    if not lines:
        return out
    jar = _jar("tokenizer", "stanford-corenlp-3.4.1.jar")
    with tempfile.TemporaryDirectory(prefix="vlrepro-ptb-") as tmp:
        src = Path(tmp) / "captions.txt"
        # Every line newline-terminated: the jar echoes a final newline only when the input has one,
        # so with a bare join an empty last caption (a model that generated nothing) was lost.
        src.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
        cmd = [_java(), "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", src.name]
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise VlreproError(f"PTB tokenizer did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise VlreproError(f"PTB tokenizer (java) failed with exit status {proc.returncode}: {err[-1] if err else 'no message'}", fix=_JAVA_FIX)
    tokenized = proc.stdout.decode("utf-8").split("\n")
    if tokenized and tokenized[-1] == "":
        tokenized.pop()  # the newline that ends the last line
    if len(tokenized) != len(lines):
        raise VlreproError(f"PTB tokenizer returned {len(tokenized)} lines for {len(lines)} captions")
    for key, line in zip(keys, tokenized, strict=False):
        out[key].append(" ".join(w for w in line.rstrip().split(" ") if w not in PTB_PUNCTUATIONS))
    return out


# --------------------------------------------------------------------------------------------
# METEOR and SPICE drivers


def _meteor(gts: Mapping[Hashable, list[str]], res: Mapping[Hashable, list[str]], timeout: float) -> float:
    """``pycocoevalcap.meteor.Meteor.compute_score`` with a watchdog and real error messages."""
    jar = _jar("meteor", "meteor-1.5.jar")
    cmd = [_java(), "-jar", "-Xmx2G", str(jar), "-", "-", "-stdio", "-l", "en", "-norm"]
    with tempfile.TemporaryFile() as errlog:
        # cwd: METEOR finds its data/ (paraphrase tables) next to the jar; it writes nothing.
        proc = subprocess.Popen(cmd, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        assert proc.stdin is not None and proc.stdout is not None

        def ask(line: str) -> str:
            try:
                proc.stdin.write((line + "\n").encode("utf-8"))
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                return ""
            return proc.stdout.readline().decode("utf-8").strip()

        def fail(what: str) -> VlreproError:
            if timed_out.is_set():
                return VlreproError(f"METEOR did not answer within {timeout:.0f} s", fix="raise meteor_timeout (--meteor-timeout) or leave METEOR out (--metrics BLEU,ROUGE_L,CIDEr)")
            proc.kill()
            proc.wait()
            errlog.seek(0)
            err = errlog.read().decode("utf-8", "replace").strip().splitlines()
            return VlreproError(f"METEOR (java) stopped while {what}: {err[-1] if err else 'no message'}", fix="METEOR needs about 2 GB of memory for its JVM; or leave METEOR out")

        try:
            stats = []
            for key in res:
                # Meteor._stat: "|||" is removed from the hypothesis and double spaces collapsed once.
                hyp = res[key][0].replace("|||", "").replace("  ", " ")
                stat = ask(" ||| ".join(("SCORE", " ||| ".join(gts[key]), hyp)))
                if not stat:
                    raise fail("scoring a caption")
                stats.append(stat)
            eval_line = "EVAL" + "".join(f" ||| {s}" for s in stats)
            proc.stdin.write((eval_line + "\n").encode("utf-8"))
            proc.stdin.flush()
            # One line per segment, then the corpus score.
            for _ in stats:
                if not proc.stdout.readline():
                    raise fail("computing segment scores")
            final = proc.stdout.readline().decode("utf-8").strip()
            if not final:
                raise fail("computing the corpus score")
            try:
                return float(final)
            except ValueError:
                raise VlreproError(f"METEOR returned {final!r} instead of a score") from None
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


_CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


def _spice(gts: Mapping[Hashable, list[str]], res: Mapping[Hashable, list[str]], timeout: float) -> float:
    """``pycocoevalcap.spice.Spice.compute_score`` with private temporary files and no cache."""
    spice_dir = _pycocoevalcap_dir() / "spice"
    missing = [name for name in _CORENLP_JARS if not (spice_dir / "lib" / name).is_file()]
    if missing:
        raise VlreproError(
            f"SPICE needs Stanford CoreNLP 3.6.0 ({', '.join(missing)}) in {spice_dir / 'lib'}; "
            "pycocoevalcap downloads it (~385 MB) on first use and vlrepro never downloads",
            fix="with network access run `python -c 'from pycocoevalcap.spice.get_stanford_models import "
            "get_stanford_models as g; g()'` (or bake the jars into the image), or leave out --spice",
        )
    jar = _jar("spice", "spice-1.0.jar")
    ids = sorted(gts)  # Spice.compute_score sorts the image ids
    data = [{"image_id": i, "test": res[i][0], "refs": gts[i]} for i in ids]
    with tempfile.TemporaryDirectory(prefix="vlrepro-spice-") as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(data), encoding="utf-8")
        cmd = [_java(), "-jar", "-Xmx8G", str(jar), str(src), "-out", str(dst), "-subset", "-silent"]
        try:
            proc = subprocess.run(cmd, cwd=spice_dir, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise VlreproError(f"SPICE did not finish within {timeout:.0f} s") from None
        if proc.returncode != 0 or not dst.is_file():
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise VlreproError(
                f"SPICE (java) failed with exit status {proc.returncode}: {err[-1] if err else 'no message'}",
                fix="SPICE 1.0 needs JDK 8 or 11 and 8 GB of memory; or leave out --spice",
            )
        results = json.loads(dst.read_text(encoding="utf-8"))

    def as_float(value: Any) -> float:
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan

    scores = [as_float(item["scores"]["All"]["f"]) for item in results]
    return float(sum(scores) / len(scores)) if scores else math.nan


# --------------------------------------------------------------------------------------------
# the metric


def _metric_set(metrics: Iterable[str], spice: bool) -> list[str]:
    chosen = []
    for m in metrics:
        name = _METRIC_ALIASES.get(str(m).strip().lower())
        if name is None:
            raise VlreproError(f"unknown caption metric {m!r}", fix="choose from BLEU, METEOR, ROUGE_L, CIDEr, SPICE")
        if name not in chosen:
            chosen.append(name)
    if spice and "SPICE" not in chosen:
        chosen.append("SPICE")
    if not chosen:
        raise VlreproError("no caption metric selected", fix="pass e.g. metrics=('BLEU', 'CIDEr')")
    return chosen


def caption_scores(
    references: Mapping[Hashable, Sequence[str]],
    predictions: Mapping[Hashable, str],
    *,
    metrics: Iterable[str] = DEFAULT_METRICS,
    spice: bool = False,
    tokenize: bool = True,
    meteor_timeout: float = 600.0,
    spice_timeout: float = 3600.0,
) -> dict[str, float]:
    """COCO caption metrics of ``predictions`` against ``references``, as ``COCOEvalCap`` computes them.

    Args:
        references: ``{image_id: [reference caption, ...]}``.
        predictions: ``{image_id: caption}``; only these images are scored.
        metrics: any of ``"BLEU"`` (gives ``Bleu_1``..``Bleu_4``), ``"METEOR"``, ``"ROUGE_L"``,
            ``"CIDEr"``, ``"SPICE"`` (case-insensitive).
        spice: add SPICE (same as listing it in ``metrics``).
        tokenize: run the PTB tokenizer first (``COCOEvalCap`` always does). ``False`` takes the
            captions as already tokenised and needs no Java for BLEU/ROUGE_L/CIDEr.
        meteor_timeout, spice_timeout: seconds before the Java process is killed.

    Returns:
        ``{"Bleu_1": .., "Bleu_2": .., "Bleu_3": .., "Bleu_4": .., "METEOR": .., "ROUGE_L": ..,
        "CIDEr": .., "SPICE": ..}`` for the metrics asked, as fractions (CIDEr can exceed 1).

    Raises:
        VlreproError: no predictions, a predicted image without references, a prediction that
            is not a string, Java missing or failing, SPICE without CoreNLP.
    """
    chosen = _metric_set(metrics, spice)
    if not predictions:
        raise VlreproError("caption results are empty: nothing to score")
    unknown = [k for k in predictions if k not in references]
    if unknown:
        shown = ", ".join(repr(k) for k in unknown[:5])
        raise VlreproError(
            f"caption results hold image ids that have no reference captions: {shown}{', …' if len(unknown) > 5 else ''} ({len(unknown)} in all)",
            fix="score against the annotation file of the split the captions were generated for",
        )
    gts: dict[Hashable, list[str]] = {}
    res: dict[Hashable, list[str]] = {}
    for key, cap in predictions.items():
        if not isinstance(cap, str):
            raise MalformedFileError(f"caption for image {key!r} is not a string: {cap!r:.80}")
        refs = list(references[key])
        if not refs:
            raise MalformedFileError(f"image {key!r} has no reference captions")
        gts[key] = refs
        res[key] = [cap]
    if tokenize:
        both = ptb_tokenize({**{("ref", k): v for k, v in gts.items()}, **{("res", k): v for k, v in res.items()}})
        gts = {k: both[("ref", k)] for k in gts}
        res = {k: both[("res", k)] for k in res}

    scores: dict[str, float] = {}
    if "BLEU" in chosen:
        from pycocoevalcap.bleu.bleu import Bleu

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"Bleu_{i + 1}": float(b) for i, b in enumerate(bleu)})
    if "METEOR" in chosen:
        scores["METEOR"] = _meteor(gts, res, meteor_timeout)
    if "ROUGE_L" in chosen:
        from pycocoevalcap.rouge.rouge import Rouge

        scores["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    if "CIDEr" in chosen:
        from pycocoevalcap.cider.cider import Cider

        scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if "SPICE" in chosen:
        scores["SPICE"] = _spice(gts, res, spice_timeout)
    return scores


# --------------------------------------------------------------------------------------------
# files and command line


def _image_id(value: Any, where: str) -> Hashable:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise MalformedFileError(f"{where}: image_id {value!r} is neither an integer nor a string")
    if isinstance(value, str) and value.isdigit():
        return int(value)  # JSON keys and some writers give "139" for COCO's integer id 139
    return value


def load_coco_captions(annotations_path: str, results_path: str) -> tuple[dict[Hashable, list[str]], dict[Hashable, str]]:
    """Read a COCO captions annotation file and a COCO results file into ``(references, predictions)``."""
    fix_ann = "use a COCO captions file such as annotations/captions_val2014.json (cocodataset.org)"
    fix_res = 'write the COCO results format: a JSON list of {"image_id": int, "caption": str}'
    doc = read_json(annotations_path, what="caption annotations file", fix=fix_ann)
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise MalformedFileError(f'caption annotations file has no "annotations" list: {annotations_path}', fix=fix_ann)
    references: dict[Hashable, list[str]] = {}
    for i, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise MalformedFileError(f"caption annotation {i} lacks image_id or a caption string: {annotations_path}", fix=fix_ann)
        references.setdefault(_image_id(ann["image_id"], "annotations"), []).append(ann["caption"])
    results = read_json(results_path, what="caption results file", fix=fix_res)
    if not isinstance(results, list):
        raise MalformedFileError(f"caption results file is not a JSON list: {results_path}", fix=fix_res)
    predictions: dict[Hashable, str] = {}
    for i, row in enumerate(results):
        if not isinstance(row, dict) or "image_id" not in row or not isinstance(row.get("caption"), str):
            raise MalformedFileError(f"caption result {i} lacks image_id or a caption string: {results_path}", fix=fix_res)
        key = _image_id(row["image_id"], "results")
        if key in predictions:
            raise VlreproError(f"caption results hold image {key!r} twice", fix="one caption per image_id")
        predictions[key] = row["caption"]
    return references, predictions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vlrepro eval caption``."""
    parser.add_argument("--annotations", required=True, help="COCO captions file ({\"images\", \"annotations\": [{image_id, caption}]})")
    parser.add_argument("--results", required=True, help='COCO results file: [{"image_id": int, "caption": str}, ...]')
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help="comma-separated subset of BLEU,METEOR,ROUGE_L,CIDEr,SPICE (default: %(default)s)")
    parser.add_argument("--spice", action="store_true", help="also compute SPICE (needs CoreNLP 3.6.0 jars and 8 GB)")
    parser.add_argument("--no-tokenize", dest="tokenize", action="store_false",
                        help="captions are already tokenised: skip the Java PTB tokenizer")
    parser.add_argument("--meteor-timeout", type=float, default=600.0, help="seconds before METEOR is killed (default 600)")
    parser.add_argument("--out", help="also write the JSON object to this file (atomically)")


def main(args: argparse.Namespace) -> int:
    """Print the selected caption metrics as one JSON object."""
    metrics = [m for m in args.metrics.split(",") if m.strip()]
    chosen = _metric_set(metrics, args.spice)  # reject a typo before reading large files
    references, predictions = load_coco_captions(args.annotations, args.results)
    scores = caption_scores(references, predictions, metrics=chosen, tokenize=args.tokenize, meteor_timeout=args.meteor_timeout)
    return emit_result(scores, args.out)
