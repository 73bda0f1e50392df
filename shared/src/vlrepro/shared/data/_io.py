"""Small helpers shared by the readers: read an official file with a one-line error, check fields."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import MalformedFileError, MissingFileError, read_json, read_jsonl
from ..paths import DATASET_VARIABLES
from .sources import how


def fix_for(path: Path, dataset: str | None) -> str:
    """The fix text of an error about ``path``: the variable that locates it and how to get it."""
    parts = []
    if dataset in DATASET_VARIABLES:
        var, sub = DATASET_VARIABLES[dataset]
        parts.append(f"set {var} (or VLREPRO_DATA, which holds {sub}/)")
    parts.append(how(path.name))
    return "; ".join(parts)


def load_json(path: Path, dataset: str | None, what: str) -> Any:
    """``read_json`` with the dataset's variable and download step in the error."""
    return read_json(path, what=what, fix=fix_for(Path(path), dataset))


def load_jsonl(path: Path, dataset: str | None, what: str) -> list[Any]:
    return read_jsonl(path, what=what, fix=fix_for(Path(path), dataset))


def require(path: Path, dataset: str | None, what: str) -> Path:
    """``path`` if it exists (file or folder), else a one-line :class:`MissingFileError`."""
    if not Path(path).exists():
        raise MissingFileError(f"{what} not found: {path}", fix=fix_for(Path(path), dataset))
    return Path(path)


def malformed(path: Path, dataset: str | None, detail: str) -> MalformedFileError:
    """A one-line error for a file that parses but does not have the official structure."""
    return MalformedFileError(f"malformed {Path(path).name} ({detail}): {path}", fix=fix_for(Path(path), dataset))


def need_keys(obj: Any, keys: Iterable[str], path: Path, dataset: str | None, where: str) -> Mapping:
    """Check that ``obj`` is a JSON object with ``keys``; name the first missing one."""
    if not isinstance(obj, Mapping):
        raise malformed(path, dataset, f"{where} is {type(obj).__name__}, expected an object")
    for k in keys:
        if k not in obj:
            raise malformed(path, dataset, f"{where} has no key {k!r}")
    return obj


def need_list(obj: Any, path: Path, dataset: str | None, where: str) -> list:
    if not isinstance(obj, list):
        raise malformed(path, dataset, f"{where} is {type(obj).__name__}, expected a list")
    return obj
