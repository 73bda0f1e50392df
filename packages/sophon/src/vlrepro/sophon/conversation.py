"""Self-questioning (spec §2): the ``v1_sq`` template, virtual-user relabelling, label masks.

SQ-LLaVA trains the LLM to *ask* questions about the image as well as to answer them. A training
conversation ``USER: <image>\\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>`` has, with
probability ``sq_r`` per later human turn, that turn re-labelled as the virtual user ``VUSER``,
whose question is then supervised like an answer (paper Eq. 5: L = L_question + L_answer, equal
weight per token)::

    {SYS} USER: <image>\\nQ1 ASSISTANT: A1</s>VUSER: Q2</s> ASSISTANT: A2</s>
                                     ^^^^^^^^^      ^^^^^^^^         ^^^^^^^^  supervised

``VUSER`` is plain text (no new vocabulary). The masks come from the original's round arithmetic
(split on ``</s>``, mask the instruction part of each round), reproduced exactly and checked
against the golden fixtures; a mismatch between the recomputed and the real length masks the
sample as in the original but is *counted and reported* instead of silently passing.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from .model import IGNORE_INDEX, IMAGE_TOKEN_INDEX

IMAGE_PLACEHOLDER = "<image>"

VICUNA_V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                    "The assistant gives helpful, detailed, and polite answers to the user's questions.")
# The missing space before "Also," is the original's; the released model was trained on it.
SQ_SYSTEM = (VICUNA_V1_SYSTEM + "Also, the artificial intelligence assistant is a curious virtual user. "
             "The virtual user asks complex questions that are relevant to the content in the image, for example, "
             "asking about background knowledge of the objects in the image, asking to discuss about events "
             "happening in the image, etc. Again, do not ask about uncertain details.")


@dataclass
class Conversation:
    """A chat template (the original's ``Conversation`` with separator styles TWO and PLAIN)."""

    system: str
    roles: tuple[str, ...]
    style: str = "two"  # "two": sep after USER turns, sep2 after ASSISTANT turns; "plain": captions
    sep: str = " "
    sep2: str = "</s>"
    messages: list[list[Any]] = field(default_factory=list)

    def copy(self) -> Conversation:
        return copy.deepcopy(self)

    def clear(self) -> Conversation:
        """Drop all messages (the original lacks this method, so ``--sq`` and its demo crash)."""
        self.messages = []
        return self

    def append_message(self, role: str, message: str | None) -> None:
        self.messages.append([role, message])

    def get_prompt(self) -> str:
        """Render: ``system + sep``, then ``role + ": " + text + (sep if i even else sep2)``; empty -> ``role + ":"``."""
        if self.style == "plain":
            out = self.system
            for _, message in self.messages:
                out += (message + self.sep) if message else ""
            return out
        seps = (self.sep, self.sep2)
        out = self.system + seps[0]
        for i, (role, message) in enumerate(self.messages):
            out += f"{role}: {message}{seps[i % 2]}" if message else f"{role}:"
        return out


TEMPLATES: dict[str, Conversation] = {
    "v1": Conversation(system=VICUNA_V1_SYSTEM, roles=("USER", "ASSISTANT")),
    "vicuna_v1": Conversation(system=VICUNA_V1_SYSTEM, roles=("USER", "ASSISTANT")),
    "v1_sq": Conversation(system=SQ_SYSTEM, roles=("USER", "ASSISTANT", "VUSER")),
    "plain": Conversation(system="", roles=("", ""), style="plain", sep="\n"),
}


def get_template(name: str) -> Conversation:
    if name not in TEMPLATES:
        from vlrepro.shared.errors import VlreproError

        raise VlreproError(f"unknown conversation template {name!r}", fix=f"choose one of: {', '.join(TEMPLATES)}")
    return TEMPLATES[name].copy()


# ------------------------------------------------------------------------------- data -> text
def move_image_to_front(conversations: list[dict]) -> list[dict]:
    """LLaVA's ``preprocess_multimodal``: a turn holding ``<image>`` becomes ``"<image>\\n" + rest``."""
    out = copy.deepcopy(conversations)
    for turn in out:
        if IMAGE_PLACEHOLDER in turn["value"]:
            rest = turn["value"].replace(IMAGE_PLACEHOLDER, "").strip()
            turn["value"] = (IMAGE_PLACEHOLDER + "\n" + rest).strip()
    return out


def relabel_virtual_user(conversations: list[dict], sq_r: float, rng: random.Random | None, *, has_image: bool) -> list[dict]:
    """Spec §2.2 (``preprocess_v1_sq2``): each human turn j > 0 becomes ``VUSER`` with probability ``sq_r``.

    The question then carries its own ``</s>``; the next gpt turn stays ``ASSISTANT``. The first
    turn (which holds ``<image>``) and text-only samples are never relabelled (and draw nothing).
    One draw per eligible turn, in order, from ``rng`` (the original uses the global ``random()``
    on every ``__getitem__``, so relabelling changes every epoch).
    """
    out = copy.deepcopy(conversations)
    if not has_image:
        return out
    draw = (rng or random).random
    for j, turn in enumerate(out):
        if j > 0 and turn["from"] == "human" and draw() < sq_r:
            turn["from"] = "vuser"
            turn["value"] = turn["value"] + "</s>"
    return out


def render_conversation(conversations: list[dict], template: str) -> str:
    """The prompt text of a (possibly relabelled) LLaVA conversation under ``template``."""
    conv = get_template(template)
    role_of = {"human": conv.roles[0], "gpt": conv.roles[1]}
    if len(conv.roles) > 2:
        role_of["vuser"] = conv.roles[2]
    turns = list(conversations)
    if turns and turns[0]["from"] not in ("human",):
        turns = turns[1:]  # LLaVA skips a leading non-human turn
    if conv.style == "plain":
        # alignment pretraining: <image> + caption + "\n"
        return IMAGE_PLACEHOLDER + turns[1]["value"] + conv.sep
    for turn in turns:
        conv.append_message(role_of[turn["from"]], turn["value"])
    return conv.get_prompt()


def inference_prompt(question: str, template: str = "v1", *, with_image: bool = True,
                     history: list[tuple[str, str]] | None = None) -> str:
    """``... USER: <image>\\n{question} ASSISTANT:`` (the eval scripts' ``model_vqa_loader`` prompt).

    ``history`` holds earlier (user, assistant) turns; the image goes into the first user turn.
    """
    conv = get_template(template)
    turns = list(history or []) + [(question, None)]
    for i, (user, assistant) in enumerate(turns):
        text = (IMAGE_PLACEHOLDER + "\n" + user) if (i == 0 and with_image) else user
        conv.append_message(conv.roles[0], text)
        conv.append_message(conv.roles[1], assistant)
    return conv.get_prompt()


# ------------------------------------------------------------------------------- text -> ids/labels
def tokenizer_image_token(prompt: str, tokenizer, image_token_index: int = IMAGE_TOKEN_INDEX) -> list[int]:
    """Tokenise ``prompt`` with one BOS, each ``<image>`` becoming the single id -200 (``mm_utils``)."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split(IMAGE_PLACEHOLDER)]
    ids: list[int] = []
    offset = 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    for k, chunk in enumerate(chunks):
        if k > 0:
            ids.append(image_token_index)
        ids.extend(chunk[offset:])
    return ids


@dataclass
class Tokenized:
    input_ids: torch.Tensor  # (T,)
    labels: torch.Tensor  # (T,) with IGNORE_INDEX where not supervised
    prompt: str
    mismatch: bool = False


def _len_ids(text: str, tokenizer, has_image: bool) -> int:
    return len(tokenizer_image_token(text, tokenizer)) if has_image else len(tokenizer(text).input_ids)


def mask_rounds(prompt: str, input_ids: list[int], tokenizer, *, sep: str, sep2: str, vuser_prefix: str | None,
                has_image: bool) -> tuple[list[int], bool]:
    """The original's round arithmetic (``preprocess_v1`` / ``preprocess_v1_sq2``), spec §2.3.

    Split on ``sep2`` (``</s>``); the cursor starts after BOS. A normal round (contains
    ``sep`` = ``" ASSISTANT: "``) masks its instruction ``len(tok(parts[0] + sep)) - 2`` tokens
    (BOS and the trailing space piece) and supervises the answer; its ``</s>`` is counted by the
    BOS of the round's own tokenisation. A VUSER round masks only ``len(tok("VUSER: ")) - 2``
    tokens, so the question and its ``</s>`` are supervised. Returns (labels, mismatch).
    """
    labels = list(input_ids)
    total_len = len(input_ids)
    cur = 1
    labels[0] = IGNORE_INDEX
    for rou in prompt.split(sep2):
        if rou == "":
            break
        parts = rou.split(sep)
        if len(parts) == 2:
            instruction_len = _len_ids(parts[0] + sep, tokenizer, has_image) - 2
        elif vuser_prefix is not None and rou.startswith(vuser_prefix.strip()):
            instruction_len = _len_ids(vuser_prefix, tokenizer, False) - 2
        else:
            break
        round_len = _len_ids(rou, tokenizer, has_image)
        labels[cur:cur + instruction_len] = [IGNORE_INDEX] * len(labels[cur:cur + instruction_len])
        cur += round_len
    labels[cur:] = [IGNORE_INDEX] * len(labels[cur:])
    mismatch = cur != total_len
    if mismatch:
        labels = [IGNORE_INDEX] * total_len
    return labels, mismatch


def tokenize_conversation(conversations: list[dict], tokenizer, template: str, *, has_image: bool,
                          sq_r: float = 0.0, rng: random.Random | None = None,
                          model_max_length: int | None = None) -> Tokenized:
    """One LLaVA sample -> (input_ids, labels), as the original's ``preprocess`` for ``template``.

    ``v1``/``vicuna_v1``: answers supervised. ``v1_sq``: relabel with ``sq_r`` first, then answers
    and VUSER questions supervised. ``plain``: ``<image>`` + caption + ``\\n``, caption supervised.
    """
    convs = move_image_to_front(conversations) if has_image else copy.deepcopy(conversations)
    if template == "v1_sq":
        convs = relabel_virtual_user(convs, sq_r, rng, has_image=has_image)
    prompt = render_conversation(convs, template)
    ids = tokenizer_image_token(prompt, tokenizer) if has_image else tokenizer(prompt).input_ids
    conv = get_template(template)
    if conv.style == "plain":
        head = len(tokenizer_image_token(IMAGE_PLACEHOLDER, tokenizer))
        labels = [IGNORE_INDEX] * head + ids[head:]
        mismatch = False
    else:
        labels, mismatch = mask_rounds(prompt, ids, tokenizer, sep=conv.sep + conv.roles[1] + ": ", sep2=conv.sep2,
                                       vuser_prefix=(conv.roles[2] + ": ") if len(conv.roles) > 2 else None,
                                       has_image=has_image)
    if model_max_length is not None:
        ids, labels = ids[:model_max_length], labels[:model_max_length]
    return Tokenized(torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long), prompt, mismatch)


def supervised_runs(input_ids: torch.Tensor, labels: torch.Tensor) -> list[list[int]]:
    """The supervised token ids grouped into contiguous runs (for tests and debugging)."""
    runs: list[list[int]] = []
    prev = False
    for tok, lab in zip(input_ids.tolist(), labels.tolist(), strict=False):
        on = lab != IGNORE_INDEX
        if on and not prev:
            runs.append([])
        if on:
            runs[-1].append(tok)
        prev = on
    return runs


def pieces_text(ids: list[int], tokenizer) -> str:
    """Token ids back to text piece by piece, ``▁`` as a space, special tokens verbatim."""
    out = []
    for piece in tokenizer.convert_ids_to_tokens(ids):
        if piece.startswith("<0x") and piece.endswith(">"):
            out.append(bytes([int(piece[3:-1], 16)]).decode("latin-1"))
        else:
            out.append(piece.replace("\u2581", " "))
    return "".join(out)
