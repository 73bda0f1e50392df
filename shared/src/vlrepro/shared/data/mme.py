"""MME (BradyFU's ``MME_Benchmark_release_version``), read as its eval_tool and ADEM-VL's eval_mme do.

Per subtask folder ``<root>/<subtask>/``, two layouts:
- ``questions_answers_YN/<stem>.txt`` + ``images/<stem>.{jpg,png}`` (artwork, celebrity,
  landmark, posters, scene);
- flat: ``<stem>.txt`` beside ``<stem>.{jpg,png}`` (every other subtask).
Each ``.txt`` holds lines ``question<TAB>answer`` (answer ``Yes``/``No``), two per image.
``root`` is ``$MME_PATH`` or its ``MME_Benchmark_release_version`` sub-folder.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MissingFileError
from ..paths import dataset_dir
from ._io import fix_for, malformed
from .records import MMERecord

RELEASE_DIR = "MME_Benchmark_release_version"
PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
              "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
SUBTASKS = PERCEPTION + COGNITION
YN_DIR = "questions_answers_YN"
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")


def mme_root(root: str | Path | None = None) -> Path:
    """The folder holding the subtask folders (``$MME_PATH`` or its ``MME_Benchmark_release_version``)."""
    d = dataset_dir("mme", root)
    return d / RELEASE_DIR if (d / RELEASE_DIR).is_dir() else d


def mme_subtasks(root: Path) -> list[str]:
    """Subtask folders present, in the official order, then any others by name."""
    present = {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
    return [s for s in SUBTASKS if s in present] + sorted(present - set(SUBTASKS))


def load_mme(root: str | Path | None = None, subtasks: list[str] | None = None) -> list[MMERecord]:
    """Every question of every subtask (official order, then file name, then line order)."""
    r = mme_root(root)
    if not r.is_dir():
        raise MissingFileError(f"MME folder not found: {r}", fix=fix_for(Path(RELEASE_DIR), "mme"))
    names = subtasks or mme_subtasks(r)
    if not names:
        raise malformed(r, "mme", "no subtask folders")
    out: list[MMERecord] = []
    for name in names:
        out.extend(load_mme_subtask(r / name))
    return out


def load_mme_subtask(folder: str | Path) -> list[MMERecord]:
    """One subtask folder, either layout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"MME subtask folder not found: {folder}", fix=fix_for(Path(RELEASE_DIR), "mme"))
    if (folder / YN_DIR).is_dir():
        qa_dir, img_dir = folder / YN_DIR, folder / "images"
    else:
        qa_dir = img_dir = folder
    txts = sorted(qa_dir.glob("*.txt"))
    if not txts:
        raise malformed(folder, "mme", "no question files (*.txt)")
    out = []
    for txt in txts:
        image = _image_for(img_dir, txt.stem)
        if image is None:
            raise MissingFileError(f"MME image for {txt} not found in {img_dir} ({txt.stem}.jpg/.png)",
                                   fix=fix_for(Path(RELEASE_DIR), "mme"))
        for lineno, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise malformed(txt, "mme", f"line {lineno} is not 'question<TAB>answer'")
            out.append(MMERecord(subtask=folder.name, image_path=image, question=parts[0].strip(),
                                 answer=parts[1].strip()))
    return out


def _image_for(img_dir: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        p = img_dir / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None
