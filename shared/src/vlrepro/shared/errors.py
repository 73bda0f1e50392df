"""User-facing errors: one line that names the problem and the fix, exit status 2.

Code anywhere in vlrepro raises :class:`VlreproError` for bad input (a missing file, malformed
JSON, an unknown config key, a model id that cannot be resolved offline). The command-line
entry points catch it, print ``<prog>: error: <message>`` on stderr and exit 2 — no traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class VlreproError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2

    def __init__(self, message: str, *, fix: str | None = None):
        self.message = " ".join(str(message).split())
        self.fix = " ".join(fix.split()) if fix else None
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message} — {self.fix}" if self.fix else self.message


class MissingFileError(VlreproError):
    """A file the run needs does not exist."""


class MalformedFileError(VlreproError):
    """A file exists but does not have the expected format."""


def read_json(path: str | Path, *, what: str = "file", fix: str | None = None) -> Any:
    """Read a JSON file, turning a missing or malformed file into a one-line :class:`VlreproError`."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{what} not found: {p}", fix=fix)
    try:
        with p.open("rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MalformedFileError(f"{what} is not valid JSON: {p} ({e})", fix=fix) from None


def read_jsonl(path: str | Path, *, what: str = "file", fix: str | None = None) -> list[Any]:
    """Read a JSON Lines file (blank lines skipped) with the same error policy as :func:`read_json`."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{what} not found: {p}", fix=fix)
    rows = []
    try:
        with p.open("r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise MalformedFileError(f"{what} line {lineno} is not valid JSON: {p} ({e})", fix=fix) from None
    except UnicodeDecodeError as e:
        raise MalformedFileError(f"{what} is not UTF-8 text: {p} ({e.reason} at byte {e.start})", fix=fix) from None
    return rows


def load_pretrained(cls, name_or_path, *, what: str = "model", **kwargs: Any):
    """``cls.from_pretrained(name_or_path, **kwargs)`` with a one-line error when it cannot be had.

    An unknown hub id while offline, a missing local folder or a folder without weights raise
    ``OSError`` or (older huggingface_hub, for path-like ids) ``HFValidationError``, a
    ``ValueError``: both become :class:`VlreproError` naming the id and the fix.
    """
    try:
        return cls.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VlreproError(
            f"cannot load {what} {str(name_or_path)!r}: {first}",
            fix="pass a local folder that holds it, or a hub id already in HF_HOME's cache (offline runs cannot download)",
        ) from None
