"""ADEM-VL's data: ScienceQA prompts (spec §4), COCO caption and instruction examples, image transforms.

Every example becomes ``(example, labels, image, indicator)``: ``example`` = BOS + prompt + answer
+ EOS, right-padded with 0 to ``max_words``; ``labels`` copies it with the prompt set to 0 (the loss
ignores id 0); ``image`` is ``[3, S, S]`` (zeros and ``indicator`` 0 for a text-only example).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from vlrepro.shared.data import ScienceQARecord, open_rgb
from vlrepro.shared.errors import MalformedFileError, read_json

from .llama import Tokenizer

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # ScienceQA / instruction transforms (timm constants)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # COCO caption transforms
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
OPTIONS = ("A", "B", "C", "D", "E")
CAPTION_PROMPT = "a picture of "


# ----------------------------------------------------------------------------- images
def to_tensor(img: Image.Image, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``Resize((size, size), bicubic) → ToTensor → Normalize`` without torchvision: ``[3, size, size]``."""
    img = img.convert("RGB").resize((size, size), Image.BICUBIC)
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, 3)
    x = x.permute(2, 0, 1).float() / 255.0
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def random_resized_crop(img: Image.Image, rng: random.Random, scale: tuple[float, float] = (0.5, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """torchvision's RandomResizedCrop box sampling (10 tries, then the centre crop)."""
    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return img.crop((x0, y0, x0 + cw, y0 + ch))
    side = min(w, h)
    return img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))


# ----------------------------------------------------------------------------- tokens
def tokenize_example(tokenizer: Tokenizer, prompt: str, answer: str, max_words: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(example, labels)`` of length ``max_words``: pad 0, prompt positions 0 in the labels (spec §1.4)."""
    prompt_ids = tokenizer.encode(prompt, bos=True, eos=False)
    ids = tokenizer.encode(prompt + answer, bos=True, eos=True)[:max_words]
    example = torch.zeros(max_words, dtype=torch.long)
    example[: len(ids)] = torch.tensor(ids, dtype=torch.long)
    labels = example.clone()
    labels[: len(prompt_ids)] = 0
    return example, labels


# ----------------------------------------------------------------------------- ScienceQA prompts
def sqa_context(record: ScienceQARecord, use_caption: bool) -> str:
    context = " ".join([record.hint, record.caption if use_caption else ""]).strip()
    return context or "N/A"


def sqa_choices(choices: list[str]) -> str:
    return " ".join(f"({OPTIONS[i]}) {c}" for i, c in enumerate(choices))


_INPUTS = {
    "Q": "Question: {q}\n",
    "QM": "Question: {q}\nOptions: {m}\n",
    "CQM": "Context: {c}\nQuestion: {q}\nOptions: {m}\n",
    "QCM": "Question: {q}\nContext: {c}\nOptions: {m}\n",
    "QCML": "Question: {q}\nContext: {c}\nOptions: {m}\nBECAUSE: {l}\n",
    "QCME": "Question: {q}\nContext: {c}\nOptions: {m}\nBECAUSE: {e}\n",
    "QCMLE": "Question: {q}\nContext: {c}\nOptions: {m}\nBECAUSE: {l} {e}\n",
    "QCLM": "Question: {q}\nContext: {c}\nBECAUSE: {l}\nOptions: {m}\n",
    "QCEM": "Question: {q}\nContext: {c}\nBECAUSE: {e}\nOptions: {m}\n",
    "QCLEM": "Question: {q}\nContext: {c}\nBECAUSE: {l} {e}\nOptions: {m}\n",
}
_OUTPUTS = {
    "A": "The answer is {a}.",
    "AL": "The answer is {a}. BECAUSE: {e}",
    "AE": "The answer is {a}. BECAUSE: {l}",
    "ALE": "The answer is {a}. BECAUSE: {l} {e}",
    "AEL": "The answer is {a}. BECAUSE: {e} {l}",
    "LA": "{l} The answer is {a}.",
    "EA": "{e} The answer is {a}.",
    "LEA": "{l} {e} The answer is {a}.",
    "ELA": "{e} {l} The answer is {a}.",
}
PROMPT_FORMATS = tuple(f"{i}-{o}" for i in _INPUTS for o in _OUTPUTS)


def build_sqa_prompt(record: ScienceQARecord, prompt_format: str = "CQM-A", use_caption: bool = False) -> tuple[str, str]:
    """``(input, target)`` of the original ``create_training_example``.

    CQM-A: ``"Context: {ctx}\\nQuestion: {q}\\nOptions: (A) … (B) …\\nResponse:"`` and ``"The answer is A."``.
    Double spaces collapse and both parts are stripped; lecture/solution newlines become ``\\n``
    literally (as the original, for GPT-3-era prompts). Training default CQM-A without captions;
    the original eval uses QCM-A with captions.
    """
    try:
        in_fmt, out_fmt = prompt_format.split("-")
        template_in, template_out = _INPUTS[in_fmt], _OUTPUTS[out_fmt]
    except (ValueError, KeyError):
        raise ValueError(f"unknown ScienceQA prompt format {prompt_format!r}; known: {', '.join(PROMPT_FORMATS)}") from None
    fields = dict(q=record.question, c=sqa_context(record, use_caption), m=sqa_choices(record.choices),
                  l=record.lecture.replace("\n", "\\n"), e=record.solution.replace("\n", "\\n"),
                  a=OPTIONS[record.answer])
    prompt = ("\n" + template_in.format(**fields) + "Response:").replace("  ", " ").strip()
    target = template_out.format(**fields).replace("  ", " ").strip()
    return prompt, target


def sqa_eval_prompt(record: ScienceQARecord, prompt_format: str = "QCM-A", use_caption: bool = True) -> str:
    """The evaluation prompt: the training input followed by ``"The answer is"`` (greedy, one token)."""
    return build_sqa_prompt(record, prompt_format, use_caption)[0] + "The answer is"


def with_captions(records: list[ScienceQARecord], caption_file: str | Path | None) -> list[ScienceQARecord]:
    """Attach the captions of an explicit ``--caption_file`` (``{"captions": {pid: text}}``)."""
    if caption_file is None:
        return records
    path = Path(caption_file)
    doc = read_json(path, what="ScienceQA captions file", fix="captions.json is in the ScienceQA repo's data/ folder")
    caps = doc.get("captions") if isinstance(doc, dict) else None
    if not isinstance(caps, dict):
        raise MalformedFileError(f"ScienceQA captions file is not {{'captions': {{pid: text}}}}: {path}")
    return [replace(r, caption=str(caps.get(r.pid, ""))) for r in records]


# ----------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class Example:
    """One training example before tokenisation."""

    prompt: str
    answer: str
    image_path: Path | None


class TrainSet(Dataset):
    """Tokenised examples with their images (ImageNet or CLIP normalisation; optional caption augmentation)."""

    def __init__(self, examples: list[Example], tokenizer: Tokenizer, *, max_words: int, image_size: int,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 augment: bool = False, seed: int = 0):
        self.examples = examples
        self.tokenizer = tokenizer
        self.max_words = max_words
        self.image_size = image_size
        self.mean, self.std = mean, std
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        ex = self.examples[idx]
        example, labels = tokenize_example(self.tokenizer, ex.prompt, ex.answer, self.max_words)
        if ex.image_path is None:
            image = torch.zeros(3, self.image_size, self.image_size)
            indicator = 0
        else:
            img = open_rgb(ex.image_path)
            if self.augment:  # BLIP caption train transform, minus RandAugment (see README)
                rng = random.Random(f"{self.seed}-{self.epoch}-{idx}")
                img = random_resized_crop(img, rng)
                if rng.random() < 0.5:
                    img = img.transpose(Image.FLIP_LEFT_RIGHT)
            image = to_tensor(img, self.image_size, self.mean, self.std)
            indicator = 1
        return {"example": example, "labels": labels, "image": image, "indicator": torch.tensor(indicator)}


def sqa_examples(records: list[ScienceQARecord], prompt_format: str, use_caption: bool) -> list[Example]:
    out = []
    for r in records:
        prompt, answer = build_sqa_prompt(r, prompt_format, use_caption)
        out.append(Example(prompt, answer, r.image_path))
    return out


def pre_caption(caption: str, max_words: int = 30) -> str:
    """BLIP's caption cleaning: lowercase, drop ``.!"()*#:;~``, collapse spaces, keep ``max_words`` words."""
    caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    caption = re.sub(r"\s{2,}", " ", caption).rstrip("\n").strip(" ")
    words = caption.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else caption


def caption_examples(items: list[tuple[Path, str]]) -> list[Example]:
    """The original passes prompt "a picture of " and answer = prompt + caption (so the text repeats it)."""
    return [Example(CAPTION_PROMPT, CAPTION_PROMPT + pre_caption(cap), path) for path, cap in items]


def instruction_examples(all_data: Path, data_root: Path) -> list[Example]:
    """LaVIN's ``all_data.json`` ``{"all": [{qid, instruction, answer, image, image_source}]}``.

    Images: ``<data_root>/cocoimages/train/COCO_train2014_<image>`` (where the code reads them, not
    the README's ``images/train2014``) or ``<data_root>/images/train/<qid>/image.png`` for ScienceQA.
    """
    doc = read_json(all_data, what="instruction data",
                    fix="get all_data.json from LaVIN's release (see the seed README) into data_root")
    rows = doc.get("all") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise MalformedFileError(f"{all_data} is not {{'all': [...]}}")
    out = []
    for row in rows:
        image = row.get("image")
        if image is None:
            path = None
        elif row.get("image_source") == "sqa":
            path = data_root / "images" / "train" / str(row["qid"]) / "image.png"
        else:
            path = data_root / "cocoimages" / "train" / f"COCO_train2014_{image}"
        out.append(Example(str(row["instruction"]), str(row["answer"]), path))
    return out


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
