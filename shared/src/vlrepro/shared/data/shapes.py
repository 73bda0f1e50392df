"""Generated pictures for the mini data sets: coloured shapes on a white background.

A 64×64 image is a 2×2 grid of 32×32 cells; each cell is empty or holds one filled square,
circle or triangle of one colour. Questions and captions are generated from the same scene,
so the pixels answer them ("what colour is the square?" → the square's colour). The scene of
a COCO image is a pure function of ``(seed, image_id)``, so VQAv2, OK-VQA and the COCO 2014
captions written into one root share identical image files.

:func:`describe` reads a scene back from pixels (tolerant of JPEG), which lets tests check that
an image really shows what its labels say.
"""

from __future__ import annotations

import io
import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageDraw

SIZE = 64
CELL = 32
BACKGROUND = (255, 255, 255)
#: saturated colours far apart in RGB, so JPEG noise never turns one into another
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 200, 20),
}
SHAPES = ("square", "circle", "triangle")
NUMBER_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four"}
CELL_NAMES = ("top left", "top right", "bottom left", "bottom right")


class Shape(NamedTuple):
    shape: str
    colour: str
    cell: int  # 0..3: top-left, top-right, bottom-left, bottom-right


Scene = tuple[Shape, ...]


def random_scene(rng: random.Random, k: int | None = None) -> Scene:
    """1–3 shapes (or ``k``) in distinct cells, sorted by cell."""
    k = k if k is not None else rng.randint(1, 3)
    cells = sorted(rng.sample(range(4), k))
    return tuple(Shape(rng.choice(SHAPES), rng.choice(sorted(COLOURS)), c) for c in cells)


def coco_scene(seed: int, image_id: int) -> Scene:
    """The scene of COCO image ``image_id`` under ``seed`` (same for every dataset sharing the image)."""
    return random_scene(random.Random(f"coco-{seed}-{image_id}"))


def draw(scene: Scene) -> Image.Image:
    """Render ``scene`` as a 64×64 RGB image."""
    img = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    d = ImageDraw.Draw(img)
    for s in scene:
        x0, y0 = (s.cell % 2) * CELL, (s.cell // 2) * CELL
        fill = COLOURS[s.colour]
        if s.shape == "square":
            d.rectangle([x0 + 3, y0 + 3, x0 + 28, y0 + 28], fill=fill)
        elif s.shape == "circle":
            d.ellipse([x0 + 3, y0 + 3, x0 + 29, y0 + 29], fill=fill)
        else:
            d.polygon([(x0 + 16, y0 + 3), (x0 + 29, y0 + 29), (x0 + 3, y0 + 29)], fill=fill)
    return img


def describe(img: Image.Image) -> Scene:
    """Read the scene back from pixels: colour at each cell centre, shape from two probe points.

    A square fills the cell's top-left probe (5, 5); a triangle leaves it empty but fills the
    bottom-left probe (6, 27); a circle fills neither.
    """
    img = img.convert("RGB")
    if img.size != (SIZE, SIZE):
        img = img.resize((SIZE, SIZE), Image.NEAREST)
    out = []
    for cell in range(4):
        x0, y0 = (cell % 2) * CELL, (cell // 2) * CELL
        colour = nearest_colour(img.getpixel((x0 + 16, y0 + 17)))
        if colour is None:
            continue
        if _filled(img.getpixel((x0 + 5, y0 + 5))):
            shape = "square"
        elif _filled(img.getpixel((x0 + 6, y0 + 27))):
            shape = "triangle"
        else:
            shape = "circle"
        out.append(Shape(shape, colour, cell))
    return tuple(out)


def nearest_colour(rgb: Sequence[int]) -> str | None:
    """The named colour nearest to ``rgb``, or None for background."""
    if not _filled(rgb):
        return None
    return min(COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOURS[c], rgb, strict=True)))


def _filled(rgb: Sequence[int]) -> bool:
    return sum((a - b) ** 2 for a, b in zip(BACKGROUND, rgb, strict=True)) > 60 ** 2


# ----------------------------------------------------------------------------- language


def phrase(s: Shape) -> str:
    return f"{s.colour} {s.shape}"


def caption(scene: Scene) -> str:
    """``a red square and a blue circle`` (article + phrase, joined like COCO captions)."""
    parts = [f"a {phrase(s)}" for s in scene]
    if len(parts) <= 2:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def count(scene: Scene, shape: str) -> int:
    return sum(1 for s in scene if s.shape == shape)


# ----------------------------------------------------------------------------- deterministic files


def encode(img: Image.Image, fmt: str) -> bytes:
    """Fixed encoder settings so the same picture gives the same bytes on every run."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        # 4:4:4 keeps colours exact enough for describe(); no EXIF, not progressive
        img.save(buf, format="JPEG", quality=92, subsampling=0, optimize=False, progressive=False)
    else:
        img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (no half-written image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(scene: Scene, path: Path) -> None:
    """Render and write ``scene``: JPEG for ``.jpg``/``.jpeg``/``.JPEG``, PNG otherwise."""
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    write_bytes(path, encode(draw(scene), fmt))
