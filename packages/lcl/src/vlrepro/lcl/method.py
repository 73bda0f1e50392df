"""Link-Context Learning (Tai et al., arXiv 2308.07891): episodes, prompts, label mask, accuracy rule.

Everything here is pure Python over strings and token ids (no model), so it is CPU-testable and
checked byte for byte against the original's outputs (tests/golden_lcl.json).

Paper §3 ("link-context learning"): a *2-way episode* is a support set of image/label pairs drawn
from two classes, followed by a query image whose label the model must copy from the support
set. Training (§3.2) builds episodes on ImageNet-900; one class is renamed to a random string so
that the answer can only come from the context (the "causal link"). The loss is the usual
autoregressive cross-entropy (paper Eq. 1, ``L = -Σ_t log p(x_t | x_<t)``) restricted to the
tokens of the final answer. Evaluation (§4) scores 2-way episodes by substring match
(``vlrepro.shared.metrics.lcl``, the original's ``LCLComputeMetrics`` rule).

Shot semantics, made explicit: ``shot`` is the number of support images PER CLASS (the code's
``data_args.shot``); the paper's "N-shot" is the total, N = 2 x shot.
"""

from __future__ import annotations

import json
import math
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from vlrepro.shared.metrics.lcl import extract_label, isekai_negative

from .model import IGNORE_INDEX, IM_END, IM_PATCH, IM_START, IMAGE_PLACEHOLDER

# ----------------------------------------------------------------------------- prompt strings (spec §2.2, §2.3)
SUPPORT_QUESTION = "[BEGIN EXAMPLE] What is in the image <image>?"
EVAL_QUERY_QUESTION = "Based on the previous examples, what is in the image <image>?"
END_EXAMPLE = " [END EXAMPLE]"
VQA_QUESTION_TEMPLATE = "Can you give me a straightforward answer to my question: <question> Consider the image <image> when answering."

#: FastChat-style systems; every template renders ``SYSTEM USER: q ASSISTANT: a</s>`` (sep " ", sep2 "</s>")
CONV_SYSTEMS: dict[str, str] = {
    "causal_v1.0": (
        "You should find the causal relationship between the examples I am going to show you. "
        "And use that to answer to the [FINAL QUESTION]."
    ),
    "hypnotized_ans_v1.0": "",
    "final_v1.0": "[FINAL QUESTION]: ",
    "vicuna_v1.1": (
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    ),
}
FIRST_SUPPORT_TEMPLATE = "causal_v1.0"
SUPPORT_TEMPLATE = "hypnotized_ans_v1.0"
QUERY_TEMPLATE = "final_v1.0"
BOS, EOS = "<s>", "</s>"


def support_answer(label: str) -> str:
    """``there is "<label>" in the image. [END EXAMPLE]`` (spec §2.2)."""
    return f'there is "{label}" in the image.{END_EXAMPLE}'


def query_answer(label: str) -> str:
    """The supervised final answer: ``there is "<label>" in the image.``."""
    return f'there is "{label}" in the image.'


def render_round(template: str, question: str, answer: str | None) -> str:
    """One conversation round as text: ``SYSTEM USER: q ASSISTANT: a</s>``, or ending ``ASSISTANT:`` if no answer.

    ``hypnotized_ans_v1.0`` has an empty system, so its round starts with the separator space;
    ``final_v1.0``'s system ends in a space, hence the two spaces after ``[FINAL QUESTION]:``.
    """
    text = f"{CONV_SYSTEMS[template]} USER: {question} ASSISTANT:"
    if answer:
        text += f" {answer}{EOS}"
    return text


def expand_image_tokens(text: str, image_token_len: int) -> str:
    """``<image>`` -> ``<im_start>`` + image_token_len x ``<im_patch>`` + ``<im_end>`` (258 tokens at 256)."""
    return text.replace(IMAGE_PLACEHOLDER, IM_START + IM_PATCH * image_token_len + IM_END)


@dataclass(frozen=True)
class Round:
    """One image/question/answer round of an episode; ``image`` is a path (or an in-memory image)."""

    image: Any
    question: str
    answer: str
    template: str = SUPPORT_TEMPLATE
    label: str = ""  # the class string this round shows (support) or asks for (query)


@dataclass(frozen=True)
class Episode:
    """Support rounds (already shuffled, templates assigned) + the query round; ``negative`` is the other class."""

    support: list[Round]
    query: Round
    negative: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def rounds(self) -> list[Round]:
        return [*self.support, self.query]

    @property
    def images(self) -> list[Any]:
        return [r.image for r in self.rounds]


def assign_templates(support: Sequence[Round]) -> list[Round]:
    """Round 1 gets the causal system prompt, the rest the empty ``hypnotized_ans`` one (spec §2.3)."""
    return [replace(r, template=FIRST_SUPPORT_TEMPLATE if i == 0 else SUPPORT_TEMPLATE) for i, r in enumerate(support)]


def shuffled(items: Sequence[Any], rng: random.Random, permutation: Sequence[int] | None = None) -> list[Any]:
    """``rng.shuffle`` of a copy, or the given permutation (``after[i] = before[permutation[i]]``)."""
    if permutation is not None:
        if sorted(permutation) != list(range(len(items))):
            raise ValueError(f"{permutation} is not a permutation of {len(items)} items")
        return [items[i] for i in permutation]
    out = list(items)
    rng.shuffle(out)
    return out


def two_way_episode(
    positives: Sequence[tuple[Any, str]],
    negatives: Sequence[tuple[Any, str]],
    query: tuple[Any, str],
    query_question: str,
    rng: random.Random,
    *,
    negative_label: str = "",
    permutation: Sequence[int] | None = None,
    answer_format=support_answer,
) -> Episode:
    """Support = positives then negatives, shuffled; query last (the layout of every LCL policy)."""
    before = [Round(img, SUPPORT_QUESTION, answer_format(lab), label=lab) for img, lab in [*positives, *negatives]]
    support = assign_templates(shuffled(before, rng, permutation))
    q_img, q_lab = query
    q = Round(q_img, query_question, query_answer(q_lab), template=QUERY_TEMPLATE, label=q_lab)
    return Episode(support=support, query=q, negative=negative_label)


# ----------------------------------------------------------------------------- training policies (spec §2.2)


@lru_cache(maxsize=1)
def icl_question_templates() -> tuple[str, ...]:
    """The 66 query questions of the original ``template/ICL.json`` (44 unique; duplicates kept, as drawn)."""
    text = resources.files("vlrepro.lcl").joinpath("templates/ICL.json").read_text(encoding="utf-8")
    return tuple(json.loads(text))


def random_label(rng: random.Random) -> str:
    """1-10 random ASCII letters, lower-cased: the fake name given to the anchor class."""
    return "".join(rng.choices(string.ascii_uppercase, k=rng.randint(1, 10))).lower()


def neighbor_weights(n: int) -> list[int]:
    """Hard-negative bias: neighbor j (0 = most similar) has weight n - j (36, 35, …, 1)."""
    return list(range(n, 0, -1))


def shots_for_episode(policy: str, shot: int, rng: random.Random) -> int:
    """Images per class in this episode.

    - ``2way``: always ``shot`` (paper [2-way], fixed shot).
    - ``2way_random``: uniform in 1..shot (paper [2-way-random]: shots uniform).
    - ``2way_weight``: k in 1..shot with p(k) ∝ exp(k/2) (the code's ``policy_2way_weight``; the paper's
      [2-way-weight] writes p_j ∝ e^j over total shots j = 2k, which is the same distribution).
    """
    if policy == "2way":
        return shot
    ks = list(range(1, shot + 1))
    if policy == "2way_random":
        return rng.choice(ks)
    if policy == "2way_weight":
        return rng.choices(ks, weights=[math.exp(k / 2) for k in ks])[0]
    raise ValueError(f"unknown episode policy {policy!r}; known: 2way, 2way_random, 2way_weight")


def sample_train_episode(
    classes: Sequence[Any],
    index: int,
    shot: int,
    rng: random.Random,
    *,
    policy: str = "2way_weight",
    class_index: dict[str, int] | None = None,
    question_templates: Sequence[str] | None = None,
) -> Episode:
    """A training episode for anchor class ``classes[index]`` (train900 rows: class_id, class_name, samples, neighbors).

    1. the anchor A is renamed to a random string (answers use it), 2. a neighbor B is drawn with
    weights 36..1 and keeps its true (lower-cased) name; its first image is the neighbor entry's
    stored image, later ones come from B's samples, 3. k images of each (k from the policy), shuffled,
    4. the query class is uniform over {A, B}, a fresh draw of its images, with a random ICL question.
    """
    anchor = classes[index]
    class_index = class_index if class_index is not None else {c.class_id: i for i, c in enumerate(classes)}
    k = shots_for_episode(policy, shot, rng)
    fake = random_label(rng)
    neighbor = rng.choices(anchor.neighbors, weights=neighbor_weights(len(anchor.neighbors)))[0]
    nb_id, nb_name, nb_image = neighbor[0], neighbor[1], neighbor[2]
    if nb_id not in class_index:
        raise ValueError(f"neighbor class {nb_id} of class {anchor.class_id} is not in the training set")
    nb_samples = classes[class_index[nb_id]].samples
    real = nb_name.lower()
    positives = [(rng.choice(anchor.samples), fake) for _ in range(k)]
    negatives = [(nb_image if i == 0 else rng.choice(nb_samples), real) for i in range(k)]
    before = [Round(img, SUPPORT_QUESTION, support_answer(lab), label=lab) for img, lab in [*positives, *negatives]]
    support = assign_templates(shuffled(before, rng))
    query_is_anchor = rng.choice([True, False])
    q_image, q_label = (rng.choice(anchor.samples), fake) if query_is_anchor else (rng.choice(nb_samples), real)
    question = rng.choice(list(question_templates or icl_question_templates()))
    query = Round(q_image, question, query_answer(q_label), template=QUERY_TEMPLATE, label=q_label)
    return Episode(support=support, query=query, negative=real if query_is_anchor else fake,
                   meta={"anchor": anchor.class_id, "neighbor": nb_id, "shot": k, "fake_label": fake})


# ----------------------------------------------------------------------------- evaluation episodes (spec §3.1)


def imagenet_eval_index(classes: Sequence[Any], sample_per_class: int) -> list[tuple[int, int]]:
    """(class row, test sample) pairs: the first ``sample_per_class`` test images of each class (0 = all)."""
    out = []
    for ci, c in enumerate(classes):
        n = len(c.test_samples) if sample_per_class <= 0 else min(sample_per_class, len(c.test_samples))
        out += [(ci, si) for si in range(n)]
    return out


def imagenet_eval_episode(
    classes: Sequence[Any], cls_idx: int, sample_idx: int, shot: int, rng: random.Random,
    permutation: Sequence[int] | None = None,
) -> Episode:
    """ImageNet-100: the query's class is the positive; its pair (row 2i <-> 2i+1) the negative; real names, lower-cased."""
    pos = classes[cls_idx]
    neg = classes[cls_idx + 1 if cls_idx % 2 == 0 else cls_idx - 1]
    pname, nname = pos.class_name.lower(), neg.class_name.lower()
    _need(pos.context_samples, shot, pos.class_name)
    _need(neg.context_samples, shot, neg.class_name)
    return two_way_episode(
        [(p, pname) for p in pos.context_samples[:shot]], [(n, nname) for n in neg.context_samples[:shot]],
        (pos.test_samples[sample_idx], pname), EVAL_QUERY_QUESTION, rng, negative_label=nname, permutation=permutation,
    )


def isekai_eval_episode(row: Any, shot: int, rng: random.Random, permutation: Sequence[int] | None = None) -> Episode:
    """ISEKAI line: first ``shot`` of positive_list / negative_list with their prompts; query = image_name."""
    _need(row.positive_list, shot, row.positive_prompt)
    _need(row.negative_list, shot, row.negative_prompt)
    # the metric's negative: the other name of the lower-cased [positive, negative] pair (ISEKAIMetrics)
    negative = isekai_negative([row.positive_prompt.lower(), row.negative_prompt.lower()],
                               extract_label(query_answer(row.label_name)))
    return two_way_episode(
        [(p, row.positive_prompt) for p in row.positive_list[:shot]],
        [(n, row.negative_prompt) for n in row.negative_list[:shot]],
        (row.image_name, row.label_name), EVAL_QUERY_QUESTION, rng, negative_label=negative, permutation=permutation,
    )


def _need(items: Sequence[Any], shot: int, name: str) -> None:
    if len(items) < shot:
        raise ValueError(f"class {name!r} has {len(items)} support images, fewer than shot={shot}")


# ----------------------------------------------------------------------------- the demo's episodes (spec §5)


def demo_lcl_episode(
    positives: Sequence[Any], pos_label: str, negatives: Sequence[Any], neg_label: str, query_image: Any, question: str
) -> Episode:
    """Gradio LCL tab: support answers are the raw label + `` [END EXAMPLE]``; positives then negatives, no shuffle."""
    support = assign_templates(
        [Round(img, SUPPORT_QUESTION, f"{pos_label}{END_EXAMPLE}", label=pos_label) for img in positives]
        + [Round(img, SUPPORT_QUESTION, f"{neg_label}{END_EXAMPLE}", label=neg_label) for img in negatives]
    )
    query = Round(query_image, scrub_user_text(question) + IMAGE_PLACEHOLDER, "", template=QUERY_TEMPLATE)
    return Episode(support=support, query=query, negative=neg_label)


def demo_vqa_rounds(image: Any, question: str) -> list[Round]:
    """Gradio VQA tab: one ``vicuna_v1.1`` round, the question with ``<image>`` appended (no space)."""
    return [Round(image, scrub_user_text(question) + IMAGE_PLACEHOLDER, "", template="vicuna_v1.1")]


def scrub_user_text(text: str) -> str:
    """Remove what a user must not inject: image tokens and the episode markers."""
    for token in (IMAGE_PLACEHOLDER, IM_START, IM_END, IM_PATCH, "[BEGIN EXAMPLE]", "[END EXAMPLE]", "[FINAL QUESTION]"):
        text = text.replace(token, "")
    return text.strip()


# ----------------------------------------------------------------------------- sequence assembly + label mask (spec §2.3-2.4)


def round_texts(rounds: Sequence[Round], *, with_final_answer: bool) -> list[str]:
    """Each round rendered with its template; the final round without its answer at inference."""
    out = []
    for i, r in enumerate(rounds):
        last = i == len(rounds) - 1
        out.append(render_round(r.template, r.question, r.answer if (not last or with_final_answer) else None))
    return out


def sequence_text(rounds: Sequence[Round], *, with_final_answer: bool) -> str:
    """Text of the assembled sequence: every round after its own ``<s>``; middle rounds lose their ``</s>``.

    The first round keeps its ``</s>`` and the final round is kept whole (the original's
    per-round tokenisation; issue #11 shows ``…[END EXAMPLE]</s><s> USER: … [END EXAMPLE]<s>[FINAL QUESTION]…``).
    """
    texts = round_texts(rounds, with_final_answer=with_final_answer)
    parts = []
    for i, t in enumerate(texts):
        if 0 < i < len(texts) - 1:
            assert t.endswith(EOS), t
            t = t[: -len(EOS)]
        parts.append(BOS + t)
    return "".join(parts)


@dataclass(frozen=True)
class Encoded:
    """Token ids of an episode; ``labels`` is -100 everywhere except the final answer (+ ``</s>``)."""

    input_ids: list[int]
    labels: list[int]
    target_text: str  # the query round with its answer (what the metric reads)


def encode_rounds(rounds: Sequence[Round], tokenizer, image_token_len: int, *, train: bool) -> Encoded:
    """Tokenise each round separately (each gets BOS), drop middle rounds' EOS, mask all but the answer.

    The answer mask comes from token ids, not string lengths: the prompt part of the final round
    (ending ``ASSISTANT:``) is tokenised on its own and must be a prefix of the whole round's ids;
    everything after it — `` there is "x" in the image.`` and ``</s>`` — is supervised. (The
    original's string-length arithmetic silently masks whole samples when the tokenizer's spacing
    rules change between releases, spec §9.)
    """
    ids: list[int] = []
    labels: list[int] = []
    n = len(rounds)
    for i, r in enumerate(rounds):
        last = i == n - 1
        question = expand_image_tokens(r.question, image_token_len)
        answer = r.answer if (not last or train) else None
        round_ids = tokenizer(render_round(r.template, question, answer)).input_ids
        if 0 < i < n - 1:
            if round_ids[-1] != tokenizer.eos_token_id:
                raise ValueError(f"support round {i} does not end with </s>: {r.answer!r}")
            round_ids = round_ids[:-1]
        if last and train:
            prompt_ids = tokenizer(render_round(r.template, question, None)).input_ids
            if round_ids[: len(prompt_ids)] != prompt_ids:
                raise ValueError("tokenization mismatch: the final prompt is not a prefix of the final round")
            round_labels = [IGNORE_INDEX] * len(prompt_ids) + round_ids[len(prompt_ids):]
        else:
            round_labels = [IGNORE_INDEX] * len(round_ids)
        ids += round_ids
        labels += round_labels
    q = rounds[-1]
    target = render_round(q.template, q.question, q.answer)
    return Encoded(ids, labels, target)


def check_image_blocks(input_ids: Sequence[int], n_images: int, image_token_len: int, ids: dict[str, int]) -> None:
    """Each ``<im_start>`` is followed by exactly ``image_token_len`` patches and ``<im_end>`` (at +len+1)."""
    starts = [i for i, t in enumerate(input_ids) if t == ids[IM_START]]
    if len(starts) != n_images:
        raise ValueError(f"{len(starts)} <im_start> tokens for {n_images} images")
    for s in starts:
        block = input_ids[s + 1: s + 1 + image_token_len]
        if any(t != ids[IM_PATCH] for t in block) or input_ids[s + image_token_len + 1] != ids[IM_END]:
            raise ValueError(f"image block at {s} is not <im_start> + {image_token_len} x <im_patch> + <im_end>")
