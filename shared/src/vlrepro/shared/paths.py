"""Where data lives: ``VLREPRO_DATA`` (default ``./data``), the seeds' per-dataset variables, ``.env``.

Precedence (highest first): an explicit path (a config override), the dataset's own variable
(``COCO_PATH``, ``VQAV2_PATH``, …) from the environment, the same from ``./.env``, then
``$VLREPRO_DATA/<sub-folder>``. A missing path is a one-line :class:`MissingFileError` naming
the variable and the expected file.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MissingFileError

#: dataset -> (environment variable of the seed READMEs, sub-folder of VLREPRO_DATA)
DATASET_VARIABLES: dict[str, tuple[str, str]] = {
    "coco": ("COCO_PATH", "coco"),
    "vqav2": ("VQAV2_PATH", "vqav2"),
    "okvqa": ("OKVQA_PATH", "okvqa"),
    "scienceqa": ("SCIENCEQA_PATH", "scienceqa"),
    "isekai": ("ISEKAI_PATH", "isekai"),
    "imagenet": ("IMAGENET_PATH", "imagenet"),
    "mme": ("MME_PATH", "mme"),
    "llava": ("LLAVA_DATA_PATH", "llava"),
}

#: non-dataset roots used by the seeds
ROOT_VARIABLES = {
    "results": ("RESULT_DIR", "results"),
    "weights": ("MODEL_CPK_DIR", "weights"),
}


def read_dotenv(path: str | Path = ".env") -> dict[str, str]:
    """Parse a ``.env`` file (``KEY=value`` lines, ``#`` comments, optional quotes, ``export``)."""
    p = Path(path)
    if not p.is_file():
        return {}
    values: dict[str, str] = {}
    for raw in p.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, _, val = line.partition("=")
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
            val = val[1:-1]
        values[key.strip()] = val
    return values


def getenv(name: str, default: str | None = None) -> str | None:
    """An environment variable, else its value in ``./.env``, else ``default``."""
    if os.environ.get(name):
        return os.environ[name]
    return read_dotenv().get(name, default)


def data_root() -> Path:
    """``$VLREPRO_DATA`` (or from ``.env``), default ``./data``."""
    return Path(getenv("VLREPRO_DATA", "data")).expanduser()


def dataset_dir(dataset: str, override: str | Path | None = None) -> Path:
    """The folder of ``dataset``: ``override`` > its variable (env, .env) > ``$VLREPRO_DATA/<sub>``."""
    if override:
        return Path(override).expanduser()
    if dataset not in DATASET_VARIABLES:
        raise KeyError(f"unknown dataset {dataset!r}; known: {sorted(DATASET_VARIABLES)}")
    var, sub = DATASET_VARIABLES[dataset]
    val = getenv(var)
    return Path(val).expanduser() if val else data_root() / sub


def root_dir(kind: str, override: str | Path | None = None) -> Path:
    """``results`` or ``weights`` root: override > RESULT_DIR/MODEL_CPK_DIR > ``$VLREPRO_DATA/<sub>``."""
    if override:
        return Path(override).expanduser()
    var, sub = ROOT_VARIABLES[kind]
    val = getenv(var)
    return Path(val).expanduser() if val else data_root() / sub


def require_file(path: str | Path, *, dataset: str | None = None, how: str | None = None) -> Path:
    """Return ``path`` if it is a file, else raise a one-line error naming the variable and the fix."""
    p = Path(path)
    if p.is_file():
        return p
    hint = []
    if dataset in DATASET_VARIABLES:
        var, sub = DATASET_VARIABLES[dataset]
        hint.append(f"set {var} (or VLREPRO_DATA, which holds {sub}/)")
    if how:
        hint.append(how)
    if dataset:
        hint.append(f"`vlrepro data check {dataset}` lists every missing file")
    raise MissingFileError(f"missing file {p}", fix="; ".join(hint) or None)


def require_dir(path: str | Path, *, dataset: str | None = None, how: str | None = None) -> Path:
    """Like :func:`require_file` for a folder."""
    p = Path(path)
    if p.is_dir():
        return p
    hint = []
    if dataset in DATASET_VARIABLES:
        var, sub = DATASET_VARIABLES[dataset]
        hint.append(f"set {var} (or VLREPRO_DATA, which holds {sub}/)")
    if how:
        hint.append(how)
    raise MissingFileError(f"missing folder {p}", fix="; ".join(hint) or None)
