"""The one ``results.json`` schema of DESIGN.md, written atomically, and the "ours vs paper" table.

A row: package, package_version, paper, task, dataset, split, n, metric, value, model,
transformers, torch, device, config (resolved), git_revision, created, and where known
paper_value; where the run trained, train_steps, train_loss_first, train_loss_last.
"""

from __future__ import annotations

import datetime as _dt
import math
import subprocess
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .atomic import write_json_atomic

REQUIRED_KEYS = (
    "package", "package_version", "paper", "task", "dataset", "split", "n", "metric", "value",
    "model", "transformers", "torch", "device", "config", "git_revision", "created",
)
TRAIN_KEYS = ("train_steps", "train_loss_first", "train_loss_last")


def _dist_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def git_revision(start: str | Path | None = None) -> str:
    """The current git commit of the source tree, or ``"unknown"`` outside a checkout (e.g. an image)."""
    cwd = Path(start) if start else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def result_row(
    *,
    package: str,
    paper: str,
    task: str,
    dataset: str,
    split: str,
    n: int,
    metric: str,
    value: float,
    model: str,
    device: str,
    config: Mapping[str, Any] | None = None,
    paper_value: float | None = None,
    train: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build one results row; versions, git revision and timestamp are filled in here.

    ``package`` is the distribution name (``vlrepro-live``). ``train`` carries train_steps,
    train_loss_first and train_loss_last where the run trained.
    """
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"metric {metric} is NaN: refusing to write a result")
    row: dict[str, Any] = {
        "package": package,
        "package_version": _dist_version(package),
        "paper": paper,
        "task": task,
        "dataset": dataset,
        "split": split,
        "n": int(n),
        "metric": metric,
        "value": value,
        "model": model,
        "transformers": _dist_version("transformers"),
        "torch": _dist_version("torch"),
        "device": device,
        "config": dict(config or {}),
        "git_revision": git_revision(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if paper_value is not None:
        row["paper_value"] = float(paper_value)
    if train:
        missing = [k for k in TRAIN_KEYS if k not in train]
        if missing:
            raise ValueError(f"train summary lacks {missing}")
        row.update({k: train[k] for k in TRAIN_KEYS})
        row.update({k: v for k, v in train.items() if k not in TRAIN_KEYS})
    row.update(extra)
    return row


def validate_row(row: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` if a row lacks a required key or its value is not a finite number."""
    missing = [k for k in REQUIRED_KEYS if k not in row]
    if missing:
        raise ValueError(f"results row lacks {missing}")
    v = row["value"]
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise ValueError(f"results value is not a finite number: {v!r}")


def write_results(out_dir: str | Path, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Path:
    """Validate and write ``out_dir/results.json`` atomically; one row is written as an object."""
    rows_list = [rows] if isinstance(rows, Mapping) else list(rows)
    if not rows_list:
        raise ValueError("no results rows to write")
    for r in rows_list:
        validate_row(r)
    payload: Any = rows_list[0] if len(rows_list) == 1 else rows_list
    return write_json_atomic(Path(out_dir) / "results.json", payload)


def ours_vs_paper_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table: dataset, split, metric, ours, paper, difference (where the paper reports one)."""
    lines = ["| dataset | split | metric | model | ours | paper | Δ |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ours = float(r["value"])
        paper = r.get("paper_value")
        diff = f"{ours - float(paper):+.2f}" if paper is not None else "–"
        paper_s = f"{float(paper):.2f}" if paper is not None else "–"
        lines.append(
            f"| {r['dataset']} | {r['split']} | {r['metric']} | {r['model']} | {ours:.2f} | {paper_s} | {diff} |"
        )
    return "\n".join(lines) + "\n"
