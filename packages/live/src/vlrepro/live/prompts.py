"""LIVE's VQA prompts (spec live.md §2), as interleaved item lists and as the text the processors see.

An *item list* is what the original hands to ``prompt_processor.prepare_input``: strings verbatim,
images as any non-string object (a PIL image, or ``{"image": name}`` in the golden fixtures).

- demonstration (ICD): ``"Question:<Q> Short answer:<A>."`` followed by the separator ``"\\n\\n"``
- query: ``"Question:<Q> Short answer:<A>"`` with ``<A>`` empty when generating
- instruction ``"Provide an answer to the question. Use the image to answer.\\n"`` opens every
  prompt except the student's training input (the original trains without it and infers with it).

Tested byte for byte against ``tests/golden_live.json`` (recorded from the original code).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Item = Any  # str (text) or anything else (an image)


@dataclass(frozen=True)
class VQAPrompt:
    """The prompt pieces of ``config/prompt/<lmm>_vqa.yaml``."""

    instruction: str = "Provide an answer to the question. Use the image to answer.\n"
    icd_template: str = "Question:<Q> Short answer:<A>."
    query_template: str = "Question:<Q> Short answer:<A>"
    sep: str = "\n\n"

    def icd_text(self, question: str, answer: str) -> str:
        """One demonstration's text, separator included."""
        return self.icd_template.replace("<Q>", question).replace("<A>", answer) + self.sep

    def query_text(self, question: str, answer: str = "") -> str:
        """The query's text; ``answer=""`` for generation and for ``query_x``."""
        return self.query_template.replace("<Q>", question).replace("<A>", answer)

    def answered_query_text(self, question: str, answer: str) -> str:
        """The query with its answer as the student and teacher see it in training (ICD template, no separator)."""
        return self.icd_template.replace("<Q>", question).replace("<A>", answer)

    # ------------------------------------------------------------------ item lists
    def ice_prompt(self, demos: Sequence[tuple[Item, str, str]]) -> list[Item]:
        """Instruction + (image, ICD text) for each ``(image, question, answer)`` demonstration."""
        items: list[Item] = [self.instruction]
        for image, question, answer in demos:
            items += [image, self.icd_text(question, answer)]
        return items

    def query_prompt(self, image: Item, question: str, answer: str) -> list[Item]:
        """The student's training input: query image + answered query (EOS added by the processor)."""
        return [image, self.answered_query_text(question, answer)]

    def query_x(self, image: Item, question: str) -> list[Item]:
        """The answer-less query; its token length marks where the answer starts."""
        return [image, self.query_text(question)]

    def teacher_inputs(self, demos: Sequence[tuple[Item, str, str]], image: Item, question: str, answer: str) -> list[Item]:
        """The teacher's training input: ICD prompt + answered query (EOS added by the processor)."""
        return self.ice_prompt(demos) + self.query_prompt(image, question, answer)

    def inference_prompt(self, image: Item, question: str, demos: Sequence[tuple[Item, str, str]] = ()) -> list[Item]:
        """Zero-shot (no ``demos``; what the ICV model sees) or k-shot ICL prompt for generation."""
        return self.ice_prompt(demos) + self.query_x(image, question)


# ----------------------------------------------------------------------------- processor text


def idefics_prompt_text(items: Sequence[Item], *, bos: str = "<s>", eos: str = "</s>", add_eos_token: bool = False) -> str:
    """The string ``IdeficsProcessor`` (transformers 4.45) tokenises for one item list.

    BOS text, then each image as ``<fake_token_around_image><image><fake_token_around_image>``
    (consecutive images share the fake token), text items with surrounding spaces stripped,
    and the EOS text if ``add_eos_token``. Tokenised with ``add_special_tokens=False``.
    """
    fake, image = "<fake_token_around_image>", "<image>"
    text = bos
    last_was_image = False
    for item in items:
        if isinstance(item, str):
            text += item.strip(" ")
            last_was_image = False
        else:
            text += (image + fake) if last_was_image else (fake + image + fake)
            last_was_image = True
    if add_eos_token:
        text += eos
    return text


def idefics2_prompt_text(items: Sequence[Item], *, add_eos_token: bool = False, eos: str = "</s>") -> str:
    """The string LIVE hands to the Idefics2 processor: images as ``"<image>"``, EOS as literal text."""
    text = "".join(item if isinstance(item, str) else "<image>" for item in items)
    return text + eos if add_eos_token else text


def idefics2_expand_images(text: str, image_seq_len: int) -> str:
    """The Idefics2 processor's expansion: each ``<image>`` -> fake + ``image_seq_len`` x ``<image>`` + fake.

    Adjacent fake tokens are merged; the tokenizer then adds BOS.
    """
    fake, image = "<fake_token_around_image>", "<image>"
    text = text.replace(image, fake + image * image_seq_len + fake)
    return text.replace(fake + fake, fake)
