"""Typed records, one per official data format, each with a lazy ``load_image()``.

Records hold paths, not pixels: reading 443k VQAv2 questions must not open 443k JPEGs. An image
is opened only when ``load_image()`` is called, and a missing or broken image is a one-line
:class:`~vlrepro.shared.errors.VlreproError` naming the file, the variable and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError

from ..errors import MalformedFileError
from ..paths import require_file


def open_rgb(path: str | Path, *, dataset: str | None = None, how: str | None = None) -> Image.Image:
    """Open an image file as an RGB :class:`PIL.Image.Image` (fully decoded, file closed)."""
    p = require_file(path, dataset=dataset, how=how)
    try:
        with Image.open(p) as img:
            # convert() forces the decode, so a truncated file fails here and not in a worker later
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise MalformedFileError(f"image cannot be decoded: {p} ({e})",
                                 fix=how or "re-download or re-extract the image archive") from None


# ----------------------------------------------------------------------------- VQA


@dataclass(frozen=True)
class VQARecord:
    """One VQAv2 / OK-VQA question joined with its annotation (official VQA API fields).

    ``answers`` are the 10 human answers (``answers[i].answer``; for OK-VQA v1.1 already
    stemmed, the unstemmed text is in ``raw_answers``). ``multiple_choice_answer`` is the
    official field for VQAv2; OK-VQA has none, so it is ``answers[0]`` as in LIVE's loader.
    """

    question_id: int
    image_id: int
    question: str
    answers: list[str]
    multiple_choice_answer: str
    question_type: str
    answer_type: str
    image_path: Path
    raw_answers: list[str] = field(default_factory=list)
    answer_confidences: list[str] = field(default_factory=list)

    def load_image(self) -> Image.Image:
        return open_rgb(self.image_path, dataset="coco", how=_COCO_IMAGES_HOW)


# ----------------------------------------------------------------------------- captions


@dataclass(frozen=True)
class CaptionRecord:
    """One COCO image with all its reference captions (file order of the annotation JSON)."""

    image_id: int
    captions: list[str]
    image_path: Path
    split: str
    file_name: str = ""

    @property
    def single_caption(self) -> str:
        """The first caption (Lever-LM's and LIVE's ``single_caption``)."""
        return self.captions[0] if self.captions else ""

    def load_image(self) -> Image.Image:
        return open_rgb(self.image_path, dataset="coco", how=_COCO_IMAGES_HOW)


# ----------------------------------------------------------------------------- ScienceQA


@dataclass(frozen=True)
class ScienceQARecord:
    """One ScienceQA problem (``problems.json`` entry + ``captions.json`` caption + split)."""

    pid: str
    question: str
    choices: list[str]
    answer: int
    hint: str
    image_path: Path | None
    subject: str
    grade: str
    lecture: str
    solution: str
    caption: str
    split: str
    topic: str = ""
    category: str = ""
    skill: str = ""

    @property
    def has_image(self) -> bool:
        return self.image_path is not None

    def load_image(self) -> Image.Image:
        if self.image_path is None:
            raise MalformedFileError(f"ScienceQA problem {self.pid} has no image (problems.json image is null)")
        return open_rgb(self.image_path, dataset="scienceqa", how=_SQA_HOW)


# ----------------------------------------------------------------------------- LLaVA


@dataclass(frozen=True)
class ConversationRecord:
    """One LLaVA-format item: ``{"id", "image"?, "conversations": [{"from", "value"}, ...]}``."""

    id: str
    image_path: Path | None
    conversations: list[dict]

    @property
    def has_image(self) -> bool:
        return self.image_path is not None

    def load_image(self) -> Image.Image:
        if self.image_path is None:
            raise MalformedFileError(f"LLaVA item {self.id} is text-only (no 'image' key)")
        return open_rgb(self.image_path, dataset="llava", how=_LLAVA_HOW)


# ----------------------------------------------------------------------------- LCL / ISEKAI


class Neighbor(NamedTuple):
    """One ``neighbors`` entry of ``train900_pairs.jsonl``: ``[class_id, class_name, image path]``."""

    class_id: str
    class_name: str
    image: str


class _RelativeImages:
    """Mixin: records whose image paths are stored relative to ``image_root``."""

    image_root: Path
    _dataset = "imagenet"
    _how = "see `vlrepro data check imagenet`"

    def image_path(self, rel: str) -> Path:
        """Absolute path of an image path stored relative to the image root."""
        return Path(self.image_root) / rel

    def load_image(self, rel: str) -> Image.Image:
        return open_rgb(self.image_path(rel), dataset=self._dataset, how=self._how)


@dataclass(frozen=True)
class ClassRecord(_RelativeImages):
    """One line of LCL's ``train900_pairs.jsonl`` (an ImageNet-900 training class).

    ``samples`` are 36 image paths relative to the ImageNet CLS-LOC root (``train/…``/``val/…``);
    ``neighbors`` are 36 ``(class_id, class_name, image)`` from most to least similar.
    """

    class_id: str
    class_name: str
    samples: list[str]
    neighbors: list[Neighbor]
    image_root: Path = Path(".")


@dataclass(frozen=True)
class TestClassRecord(_RelativeImages):
    """One line of LCL's ``test100_pairs.jsonl`` (an ImageNet-100 test class).

    Lines are paired (0,1), (2,3), …: the class on line 2i is the negative of 2i+1 and back.
    """

    __test__ = False  # not a pytest test class, despite its name

    class_id: str
    class_name: str
    context_samples: list[str]
    test_samples: list[str]
    image_root: Path = Path(".")


@dataclass(frozen=True)
class EpisodeRecord(_RelativeImages):
    """One line of ``ISEKAI-10.json`` / ``ISEKAI-pair.json`` (JSON Lines despite the extension).

    The file's keys are ``positive_promt``/``negative_promt`` (sic); here they are spelled
    ``positive_prompt``/``negative_prompt``, with the misspelt names kept as aliases.
    """

    image_name: str
    positive_list: list[str]
    negative_list: list[str]
    positive_prompt: str
    negative_prompt: str
    label_name: str
    image_root: Path = Path(".")

    _dataset = "isekai"
    _how = "see `vlrepro data check isekai`"

    @property
    def positive_promt(self) -> str:  # the original key name
        return self.positive_prompt

    @property
    def negative_promt(self) -> str:
        return self.negative_prompt

    @property
    def query_path(self) -> Path:
        return self.image_path(self.image_name)

    def load_query_image(self) -> Image.Image:
        return self.load_image(self.image_name)


# ----------------------------------------------------------------------------- MME


@dataclass(frozen=True)
class MMERecord:
    """One MME yes/no question: subtask folder, image, question (with "Please answer yes or no."), GT."""

    subtask: str
    image_path: Path
    question: str
    answer: str

    @property
    def image_name(self) -> str:
        """The image file name, as MME's ``calculation.py`` result lines expect."""
        return self.image_path.name

    def load_image(self) -> Image.Image:
        return open_rgb(self.image_path, dataset="mme", how=_MME_HOW)


_COCO_IMAGES_HOW = "download http://images.cocodataset.org/zips/{train,val}2014.zip into $COCO_PATH/mscoco2014/"
_SQA_HOW = "download ScienceQA from https://github.com/lupantech/ScienceQA (images/{train,val,test}/<pid>/image.png)"
_LLAVA_HOW = "download the images named in the LLaVA JSON (https://github.com/haotian-liu/LLaVA/blob/main/docs/Data.md)"
_MME_HOW = ("get MME_Benchmark_release_version from the MME repo "
            "(https://github.com/BradyFU/Awesome-Multimodal-Large-Language-Models/tree/Evaluation)")
