"""Interleaved prompts of the two LVLMs (spec §2) and the InfoScore label-mask context (spec §1a).

A demonstration (ICD) or query is a data row (a dict with the task's fields). A prompt is first an
*item list* — ``{"image": <path or PIL image>}`` dicts and strings, the list handed to the
original ``interface.prepare_input`` — and then the model's raw *processor text*:

* OpenFlamingo: no BOS, ``<image>`` per image, ``<|endofchunk|>`` after every text item except a
  generation query, then the tokenizer's EOS if ``add_eos_token``.
* IDEFICS: ``<s>`` + instruction, ``<fake_token_around_image><image><fake_token_around_image>`` per
  image (consecutive images share the fake tokens), ``\\n`` after every text item except a
  generation query, then ``</s>`` if ``add_eos_token``.

Both are checked byte for byte against the original code's output (tests/golden_leverlm.json).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Item = Any  # str | {"image": path-or-PIL}
Family = Literal["flamingo", "idefics"]

FLAMINGO_IMAGE = "<image>"
FLAMINGO_EOC = "<|endofchunk|>"
IDEFICS_FAKE = "<fake_token_around_image>"
IDEFICS_IMAGE = "<image>"


@dataclass(frozen=True)
class PromptStyle:
    """One (LVLM, task) prompt configuration: the fields of ``infer_model/*.yaml`` × ``task/*.yaml``."""

    family: Family
    template: str  # e.g. "Question:<Q> Short answer:<A>"
    column_token_map: Mapping[str, str]  # field -> placeholder, e.g. {"question": "<Q>", "answer": "<A>"}
    split_token: str  # the query prompt ends here at generation time ("Output:", "Short answer:")
    label_field: str  # the field generated (single_caption / answer)
    instruction: str = ""
    icd_join_char: str = FLAMINGO_EOC
    image_field: str = "image"
    bos_token: str = "<s>"
    eos_token: str = "</s>"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def fill(self, row: Mapping[str, Any], *, with_label: bool = True) -> str:
        """The row's text: the template with every placeholder replaced; cut after the split token if not ``with_label``."""
        text = self.template
        for col, placeholder in self.column_token_map.items():
            if col == self.label_field and not with_label:
                continue
            text = text.replace(placeholder, str(row[col]))
        if not with_label:
            text = text[: text.index(self.split_token) + len(self.split_token)]
        return text


def row_items(style: PromptStyle, row: Mapping[str, Any], *, with_label: bool = True) -> list[Item]:
    """``[{"image": ...}, text]`` for one row."""
    return [{"image": row[style.image_field]}, style.fill(row, with_label=with_label)]


def sequence_items(style: PromptStyle, icds: Sequence[Mapping[str, Any]], query: Mapping[str, Any],
                   *, query_label: bool) -> list[Item]:
    """Items of ``[ICD_1 … ICD_k, query]``; the query carries its label for scoring, not for generation."""
    items: list[Item] = []
    for r in icds:
        items += row_items(style, r, with_label=True)
    items += row_items(style, query, with_label=query_label)
    return items


def processor_text(style: PromptStyle, items: Sequence[Item], *, add_eos_token: bool = False,
                   is_last_for_generation: bool = False) -> str:
    """The raw text the model's processor tokenises (``add_special_tokens=False``) for ``items``."""
    texts = [i for i, it in enumerate(items) if isinstance(it, str)]
    last_text = texts[-1] if texts else -1
    out: list[str] = []
    if style.family == "idefics":
        out.append(style.bos_token + style.instruction)
    prev_image = False
    for i, it in enumerate(items):
        if isinstance(it, str):
            piece = it.strip(" ")
            if not (is_last_for_generation and i == last_text):
                piece += style.icd_join_char
            out.append(piece)
            prev_image = False
        elif style.family == "flamingo":
            out.append(FLAMINGO_IMAGE)
        else:  # IDEFICS: consecutive images share the fake token between them
            out.append((IDEFICS_IMAGE + IDEFICS_FAKE) if prev_image else (IDEFICS_FAKE + IDEFICS_IMAGE + IDEFICS_FAKE))
            prev_image = True
    if add_eos_token:
        out.append(style.eos_token)
    return "".join(out)


def images_of(items: Sequence[Item]) -> list[Any]:
    """The images of an item list, in order."""
    return [it["image"] for it in items if not isinstance(it, str)]


def scoring_text(style: PromptStyle, icds: Sequence[Mapping[str, Any]], query: Mapping[str, Any]) -> str:
    """Text scored by InfoScore: ICDs, then the query *with* its label, join char and EOS (spec §1a)."""
    return processor_text(style, sequence_items(style, icds, query, query_label=True), add_eos_token=True)


def generation_text(style: PromptStyle, icds: Sequence[Mapping[str, Any]], query: Mapping[str, Any]) -> str:
    """ICL inference prompt: ICDs, then the query up to and including the split token."""
    return processor_text(style, sequence_items(style, icds, query, query_label=False), is_last_for_generation=True)


def mask_context(style: PromptStyle, icds: Sequence[Mapping[str, Any]], query: Mapping[str, Any],
                 *, era: Literal["paper_era", "head"] = "paper_era") -> str:
    """The string whose token count is InfoScore's label-mask length.

    ``paper_era`` (what the paper used, our default): every ICD followed by the join char, then the
    query prompt up to the split token — the same text as :func:`generation_text`. ``head`` is the
    newest original's defect (the join char after the last ICD is missing, so the mask starts one
    token early); it is kept only so the tests can show the difference.
    """
    if era == "paper_era" or not icds:
        return generation_text(style, icds, query)
    text = generation_text(style, icds[:-1], icds[-1])  # ICDs 1..k-1, then ICD k as if it were a query
    text = text[: len(text) - len(style.fill(icds[-1], with_label=False))] + style.fill(icds[-1])
    rest = processor_text(style, row_items(style, query, with_label=False), is_last_for_generation=True)
    if style.family == "idefics":
        rest = rest[len(style.bos_token + style.instruction):]
    return text + rest


# ----------------------------------------------------------------------------- post-processing (spec §2)
def postprocess(family: Family, task: str, text: str) -> str:
    """Turn a generated continuation into a prediction, as the original inference code does."""
    import re

    if task == "caption":
        cut = "Output" if family == "flamingo" else "Caption"
        out = text.split(cut, 1)[0].replace('"', "")
        if family == "idefics":
            out = out.replace("\n", "")
        return out.strip()
    out = re.split("Question|Answer|Short", text, maxsplit=1)[0]
    out = out.split(", ", 1)[0]
    if family == "idefics":
        out = out.replace("\n", "")
    return out.strip()


# ----------------------------------------------------------------------------- presets of infer_model × task
def style_for(family: Family, task: str, *, bos_token: str, eos_token: str) -> PromptStyle:
    """The spec's templates (configs ``infer_model/*.yaml`` × ``task/*.yaml``) for one LVLM family and task."""
    if task == "caption":
        tmpl, cmap, split, label, instr = ("Output:<X>" if family == "flamingo" else "Caption:<X>"), \
            {"single_caption": "<X>"}, ("Output:" if family == "flamingo" else "Caption:"), "single_caption", ""
    elif task == "vqa":
        tmpl, cmap, split, label = "Question:<Q> Short answer:<A>", {"question": "<Q>", "answer": "<A>"}, "Short answer:", "answer"
        instr = "" if family == "flamingo" else "Instruction: provide an answer to the question. Use the image to answer.\n"
    else:
        raise ValueError(f"unknown task {task!r}; known: caption, vqa")
    return PromptStyle(family=family, template=tmpl, column_token_map=cmap, split_token=split, label_field=label,
                       instruction=instr, icd_join_char=FLAMINGO_EOC if family == "flamingo" else "\n",
                       bos_token=bos_token, eos_token=eos_token)
