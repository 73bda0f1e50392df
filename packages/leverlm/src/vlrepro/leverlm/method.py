"""Lever-LM's method in one module: InfoScore, the beam search that builds D_M, and the Lever-LM model.

Paper: "Lever LM: Configuring In-Context Sequence to Lever Large Vision Language Models"
(NeurIPS 2024, arXiv 2312.10104). Numbers in brackets refer to the reimplementation spec
(``specs/leverlm.md``) which states the paper's equations as the code implements them.

* InfoScore [§1a]. For an LVLM M, a query x (image + prompt up to the split token), its label y
  (ground truth + join char + EOS) and an ICD prefix S::

      P_M(y | S, x) = exp( -(1/|y|) Σ_t log p_M(y_t | S, x, y_<t) )            (Eq. 1)
      InfoScore(c | S, x) = P_M(y | S + c, x) - P_M(y | S, x)   ∈ (-1, 1)       (Eq. 2)

  ``+ c`` inserts the candidate by ``construct_order`` (left: leftmost; right: next to x).
* Beam search [§1a]: ``few_shot_num`` steps; each beam's top-``beam_size`` candidates by Eq. 2, then
  the global top-``beam_size`` of the pooled expansions by *this step's* score only.
* Lever-LM [§1b]: a 2-layer GPT-2 over the supporting-set indices + [EOS, BOS, QUERY]; CLIP
  features of the query are added to the embedding at position 1 and those of each ICD at its
  own position (Eq. 3: e_t = wte(s_t) + Σ_m A_m(f_m)); trained by next-token cross-entropy and
  decoded greedily without repeats [§1c].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from .prompts import PromptStyle, images_of, mask_context, scoring_text, sequence_items

Order = Literal["left", "right"]

# ============================================================================ InfoScore (Eq. 1, 2)


def label_mean_log_prob(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        mask_lengths: Sequence[int], pad_token_id: int) -> torch.Tensor:
    """(1/|y|) Σ_t log p(y_t | ·) per row, over the label tokens only.

    Args:
        logits: [B, T, V] right-padded forward.
        input_ids, attention_mask: [B, T].
        mask_lengths: tokens 0..mask_len-1 of each row (ICDs + query prompt) are context, not label.
        pad_token_id: tokens equal to it are ignored (Flamingo: pad == eos, so its EOS is not counted).
    Returns:
        [B] float tensor.
    """
    labels = input_ids.clone()  # [B, T]
    pos = torch.arange(labels.shape[1], device=labels.device).unsqueeze(0)  # [1, T]
    lens = torch.tensor(list(mask_lengths), device=labels.device).unsqueeze(1)  # [B, 1]
    keep = (pos >= lens) & (labels != pad_token_id) & attention_mask.bool()
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # predicts tokens 1..T-1
    tok_logp = logp.gather(-1, labels[:, 1:].unsqueeze(-1)).squeeze(-1)  # [B, T-1]
    keep = keep[:, 1:].float()
    return (tok_logp * keep).sum(1) / keep.sum(1).clamp(min=1.0)


def insert_candidate(seq: Sequence[int], cand: int, order: Order) -> list[int]:
    """The prompt order of ``seq`` (= [ICDs…, query]) with ``cand`` added: left [c, S, q] or right [S, c, q]."""
    if order == "left":
        return [cand, *seq]
    if order == "right":
        return [*seq[:-1], cand, seq[-1]]
    raise ValueError(f"construct_order must be left or right, not {order!r}")


class InfoScorer:
    """Eq. 1/2 on an LVLM adapter, with candidates scored ``batch_size`` prompts per forward.

    What all candidates of a beam share — P(y | S, x) — is computed once per beam; token counts of
    the mask contexts are memoised.
    """

    def __init__(self, lvlm, style: PromptStyle, rows: Callable[[int], Mapping[str, Any]] | Sequence[Mapping[str, Any]],
                 *, batch_size: int = 32, mask_era: str = "paper_era"):
        self.lvlm, self.style, self.batch_size, self.mask_era = lvlm, style, int(batch_size), mask_era
        self._row = rows if callable(rows) else rows.__getitem__
        self._count_cache: dict[str, int] = {}

    def _mask_len(self, text: str) -> int:
        if text not in self._count_cache:
            self._count_cache[text] = self.lvlm.token_count(text)
        return self._count_cache[text]

    def probability(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """P_M(y | S, x) (Eq. 1) for each id sequence [ICD…, query]; returns [len(sequences)] float64 on CPU."""
        out = []
        for i in range(0, len(sequences), self.batch_size):
            chunk = sequences[i : i + self.batch_size]
            texts, images, mask_lens = [], [], []
            for seq in chunk:
                rows = [self._row(j) for j in seq]
                icds, query = rows[:-1], rows[-1]
                texts.append(scoring_text(self.style, icds, query))
                images.append(images_of(sequence_items(self.style, icds, query, query_label=True)))
                mask_lens.append(self._mask_len(mask_context(self.style, icds, query, era=self.mask_era)))
            logits, ids, attn = self.lvlm.logits(texts, images)
            mean_lp = label_mean_log_prob(logits, ids, attn, mask_lens, self.lvlm.tokenizer.pad_token_id)
            if not torch.isfinite(mean_lp).all():
                from vlrepro.shared.errors import VlreproError

                raise VlreproError("the LVLM returned non-finite log-probabilities while scoring InfoScore",
                                   fix="check the model weights and the image processor (mean/std set?) and use precision=bf16/fp32")
            out.append(torch.exp(mean_lp).double().cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def __call__(self, seq: Sequence[int], candidates: Sequence[int], order: Order) -> list[float]:
        """InfoScore (Eq. 2) of every candidate for the beam ``seq`` = [ICD…, query]."""
        base = self.probability([list(seq)])[0]  # shared by every candidate of this beam
        with_c = self.probability([insert_candidate(seq, c, order) for c in candidates])
        return (with_c - base).tolist()


# ============================================================================ beam search (spec §1a)


@dataclass
class BeamResult:
    id_list: list[list[int]]  # beam_size × [icd…, query]
    score_list: list[float]  # the last step's InfoScore of each sequence

    def to_json(self) -> dict:
        return {"id_list": self.id_list, "score_list": self.score_list}


def _top(scored: Sequence[tuple[Any, float]], k: int) -> list[tuple[Any, float]]:
    """Top-k by score, ties kept in input order (stable), so batched and naive scoring agree exactly."""
    return sorted(scored, key=lambda t: -t[1])[:k]


def beam_search(query_idx: int, candidates: Sequence[int], score_fn: Callable[[Sequence[int], Sequence[int], Order], Sequence[float]],
                *, beam_size: int = 5, few_shot_num: int = 2, construct_order: Order = "left",
                right_store: Literal["original", "prompt_order"] = "original") -> BeamResult:
    """Build ``beam_size`` ICD sequences of length ``few_shot_num`` for one anchor.

    The stored list is built by prepending (``[c, *seq]``) as in the original. With
    ``construct_order=right`` that stores the prompt order reversed for 2 shots and neither order for
    ≥3 (spec addendum); ``right_store="prompt_order"`` stores the scored prompt order instead.
    """
    beams: list[list[int]] = [[query_idx]]
    scores: list[float] = []
    for _ in range(few_shot_num):
        pool: list[tuple[list[int], float]] = []
        for seq in beams:
            cands = [c for c in candidates if c not in seq]
            if not cands:
                continue
            s = score_fn(seq, cands, construct_order)
            for c, sc in _top(list(zip(cands, s, strict=False)), beam_size):
                keep_prompt = construct_order == "right" and right_store == "prompt_order"
                new = insert_candidate(seq, c, "right") if keep_prompt else [c, *seq]
                pool.append((new, float(sc)))
        best = _top(pool, beam_size)
        beams, scores = [b for b, _ in best], [s for _, s in best]
    return BeamResult(id_list=beams, score_list=scores)


# ============================================================================ Lever-LM (spec §1b, §1c)

#: ``train`` option -> (query feature modalities, ICD feature modalities)
TRAIN_OPTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "query_img_icd_idx": (("image",), ()),
    "query_img_icd_img": (("image",), ("image",)),
    "query_img_icd_text": (("image",), ("text",)),
    "query_img_icd_img_text": (("image",), ("image", "text")),
    "query_img_text_icd_img_text": (("image", "text"), ("image", "text")),
    "query_text_icd_text": (("text",), ("text",)),
}


def modalities(train_option: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if train_option not in TRAIN_OPTIONS:
        from vlrepro.shared.errors import VlreproError

        raise VlreproError(f"unknown train option {train_option!r}", fix=f"choose one of {sorted(TRAIN_OPTIONS)}")
    return TRAIN_OPTIONS[train_option]


class LeverLM(nn.Module):
    """GPT-2 over ICD indices with CLIP features injected into the input embeddings (Eq. 3).

    Vocabulary: 0..N-1 are supporting-set indices; EOS=N, BOS=N+1, QUERY=N+2. A training sequence
    is [BOS, QUERY, icd_1 … icd_l, EOS]; the query's features are added at position 1 and ICD j's at
    position 1+j.
    """

    def __init__(self, index_ds_size: int, *, train_option: str = "query_img_icd_img_text", n_embd: int = 512,
                 n_head: int = 8, n_layer: int = 2, n_positions: int = 1024, feature_dim: int = 512,
                 adapter: bool = False, norm: bool = False):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.index_ds_size = int(index_ds_size)
        self.eos_id, self.bos_id, self.query_id = self.index_ds_size, self.index_ds_size + 1, self.index_ds_size + 2
        self.train_option = train_option
        self.query_modalities, self.icd_modalities = modalities(train_option)
        self.norm = bool(norm)
        self.lm = GPT2LMHeadModel(GPT2Config(vocab_size=self.index_ds_size + 3, n_embd=n_embd, n_head=n_head,
                                             n_layer=n_layer, n_positions=n_positions))
        used = sorted(set(self.query_modalities) | set(self.icd_modalities))
        if not adapter and used and feature_dim != n_embd:
            raise ValueError(f"feature_dim {feature_dim} != n_embd {n_embd}: enable the adapter")
        # per-modality adapter Linear(D, 4E) - ReLU - Linear(4E, E)  [§1b]
        self.adapters = nn.ModuleDict({m: nn.Sequential(nn.Linear(feature_dim, 4 * n_embd), nn.ReLU(), nn.Linear(4 * n_embd, n_embd))
                                       for m in used}) if adapter else nn.ModuleDict()

    # -- Eq. 3 -----------------------------------------------------------------------------------
    def project(self, modality: str, feats: torch.Tensor) -> torch.Tensor:
        """CLIP features [..., D] -> embedding space [..., E]: optional adapter, then optional L2 norm."""
        x = self.adapters[modality](feats) if modality in self.adapters else feats
        return torch.nn.functional.normalize(x, dim=-1) if self.norm else x

    def embed(self, ids: torch.Tensor, query_feats: Mapping[str, torch.Tensor],
              icd_feats: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
        """ids [B, T] with T ≥ 2 -> inputs_embeds [B, T, E]; icd_feats[m] is [B, K, D] for the K ICDs at positions 2..K+1."""
        emb = self.lm.transformer.wte(ids)  # [B, T, E]
        add = torch.zeros_like(emb)
        for m in self.query_modalities:
            add[:, 1] = add[:, 1] + self.project(m, query_feats[m].to(emb.dtype))
        if icd_feats:
            for m in self.icd_modalities:
                f = icd_feats[m]
                k = min(f.shape[1], ids.shape[1] - 2)
                if k > 0:
                    add[:, 2 : 2 + k] = add[:, 2 : 2 + k] + self.project(m, f[:, :k].to(emb.dtype))
        return emb + add

    def forward(self, ids: torch.Tensor, query_feats: Mapping[str, torch.Tensor],
                icd_feats: Mapping[str, torch.Tensor] | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None):
        """GPT-2 forward; with ``labels`` (the ids themselves) returns the shifted next-token CE as ``.loss``."""
        return self.lm(inputs_embeds=self.embed(ids, query_feats, icd_feats), attention_mask=attention_mask, labels=labels)

    def training_ids(self, icd_seqs: torch.Tensor) -> torch.Tensor:
        """[B, l] ICD ids -> [B, l+3] = [BOS, QUERY, icd…, EOS]."""
        b = icd_seqs.shape[0]
        bos = torch.full((b, 1), self.bos_id, dtype=torch.long, device=icd_seqs.device)
        q = torch.full((b, 1), self.query_id, dtype=torch.long, device=icd_seqs.device)
        eos = torch.full((b, 1), self.eos_id, dtype=torch.long, device=icd_seqs.device)
        return torch.cat([bos, q, icd_seqs.long(), eos], dim=1)

    @torch.no_grad()
    def generate(self, query_feats: Mapping[str, torch.Tensor], shot_num: int,
                 icd_features: Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
                 *, ban: Literal["batch_earlier_steps", "per_row"] = "batch_earlier_steps") -> torch.Tensor:
        """Greedy ICD configuration [B, shot_num] (§1c): special ids and repeats are banned at every step.

        ``batch_earlier_steps`` reproduces the original: an id that any row of the batch picked at an
        earlier step is banned in every row (rows may still share an id picked at the same step).
        ``per_row`` bans only the row's own earlier picks. Either way a row never repeats an ICD
        (needs ``shot_num`` ≤ the index size): a row the batch-wide ban leaves without any id falls
        back to the per-row ban.
        """
        b = next(iter(query_feats.values())).shape[0]
        device = next(self.parameters()).device
        ids = torch.tensor([[self.bos_id, self.query_id]], device=device).repeat(b, 1)  # [B, 2]
        chosen = torch.zeros(b, 0, dtype=torch.long, device=device)
        for _ in range(shot_num):
            icd_feats = icd_features(chosen) if chosen.shape[1] and self.icd_modalities else None
            logits = self.forward(ids, query_feats, icd_feats).logits[:, -1].float()  # [B, V]
            logits[:, self.index_ds_size:] = float("-inf")
            if chosen.shape[1]:
                own = logits.scatter(1, chosen, float("-inf"))  # the row's own earlier picks
                if ban == "per_row":
                    logits = own
                else:
                    logits[:, torch.unique(chosen)] = float("-inf")
                    # where the batch-wide ban leaves a row nothing (small index sets), fall back to the
                    # per-row ban instead of taking the argmax of an all -inf row (the original's repeat)
                    empty = torch.isinf(logits).all(-1)  # [B]
                    logits[empty] = own[empty]
            nxt = torch.softmax(logits, dim=-1).argmax(-1, keepdim=True)  # [B, 1]
            chosen = torch.cat([chosen, nxt], dim=1)
            ids = torch.cat([ids, nxt], dim=1)
        return chosen


def lever_lm_param_count(index_ds_size: int, n_embd: int = 512, n_layer: int = 2, n_positions: int = 1024) -> int:
    """Closed-form parameter count of the GPT-2 backbone (tied lm_head), for the paper's "67M" check."""
    per_layer = 2 * 2 * n_embd + (n_embd * 3 * n_embd + 3 * n_embd) + (n_embd * n_embd + n_embd) \
        + (n_embd * 4 * n_embd + 4 * n_embd) + (4 * n_embd * n_embd + n_embd)
    return (index_ds_size + 3) * n_embd + n_positions * n_embd + n_layer * per_layer + 2 * n_embd
