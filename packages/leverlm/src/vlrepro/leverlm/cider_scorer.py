"""``scorer=cider`` (spec §1a, COCO captioning only): a candidate's score is the CIDEr of the caption
the LVLM generates for the anchor *with* the candidate in the prompt minus the CIDEr *without* it.

CIDEr is pycocoevalcap's ``Cider`` formula (CIDEr-D: n = 1..4, clipped tf-idf cosine with a Gaussian
length penalty, σ = 6, averaged over references, ×10),
with document frequencies taken from the whole supporting (train) set's references, so that one
image's score is not degenerate (a one-image corpus gives every n-gram idf 0). Captions are
tokenised by lower-casing and keeping alphanumeric runs (no Java PTB tokenizer per candidate).
The original's exact df source could not be checked (spec §1a gives only "against the train
annotation file"): README lists this as unverified.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .method import Order, insert_candidate
from .prompts import PromptStyle, generation_text, images_of, postprocess, sequence_items

N = 4
SIGMA = 6.0


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _counts(words: Sequence[str]) -> Counter:
    return Counter(tuple(words[i : i + k]) for k in range(1, N + 1) for i in range(len(words) - k + 1))


class Cider:
    """CIDEr with a fixed reference corpus for document frequencies."""

    def __init__(self, corpus_refs: Sequence[Sequence[str]]):
        self.df: Counter = Counter()
        for refs in corpus_refs:
            self.df.update(set(ng for r in refs for ng in _counts(_words(r))))
        self.log_n = math.log(max(1, len(corpus_refs)))

    def _vec(self, cnt: Counter) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [{} for _ in range(N)]
        norm = [0.0] * N
        for ng, tf in cnt.items():
            n = len(ng) - 1
            vec[n][ng] = tf * (self.log_n - math.log(max(1.0, self.df[ng])))
            norm[n] += vec[n][ng] ** 2
        return vec, [math.sqrt(x) for x in norm], sum(tf for ng, tf in cnt.items() if len(ng) == 1)

    def score(self, hyp: str, refs: Sequence[str]) -> float:
        vh, nh, lh = self._vec(_counts(_words(hyp)))
        total = 0.0
        for r in refs:
            vr, nr, lr = self._vec(_counts(_words(r)))
            penalty = math.exp(-((lh - lr) ** 2) / (2 * SIGMA**2))
            for n in range(N):
                val = sum(min(v, vr[n].get(ng, 0.0)) * vr[n].get(ng, 0.0) for ng, v in vh[n].items())
                if nh[n] and nr[n]:
                    val /= nh[n] * nr[n]
                total += val * penalty / N
        return 10.0 * total / max(1, len(refs))


class CiderScorer:
    """``score_fn(seq, candidates, order)`` for beam search: CIDEr(with c) − CIDEr(without c)."""

    def __init__(self, lvlm, style: PromptStyle, rows: Sequence[Mapping[str, Any]], *, batch_size: int = 32,
                 gen_args: Mapping[str, Any] | None = None):
        self.lvlm, self.style, self.rows, self.batch_size = lvlm, style, rows, int(batch_size)
        self.gen_args = dict(gen_args or {})
        self.cider = Cider([r.get("captions") or [r["single_caption"]] for r in rows])

    def captions(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        out = []
        for i in range(0, len(sequences), self.batch_size):
            chunk = sequences[i : i + self.batch_size]
            texts, images = [], []
            for seq in chunk:
                icds, q = [self.rows[j] for j in seq[:-1]], self.rows[seq[-1]]
                texts.append(generation_text(self.style, icds, q))
                images.append(images_of(sequence_items(self.style, icds, q, query_label=False)))
            out += [postprocess(self.lvlm.family, "caption", o) for o in self.lvlm.generate(texts, images, **self.gen_args)]
        return out

    def __call__(self, seq: Sequence[int], candidates: Sequence[int], order: Order) -> list[float]:
        q = self.rows[seq[-1]]
        refs = q.get("captions") or [q["single_caption"]]
        caps = self.captions([list(seq)] + [insert_candidate(seq, c, order) for c in candidates])
        base = self.cider.score(caps[0], refs)
        return [self.cider.score(c, refs) - base for c in caps[1:]]
