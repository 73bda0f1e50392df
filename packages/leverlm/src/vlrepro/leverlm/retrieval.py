"""Demonstration retrieval over cached CLIP features: candidate samplers (spec §1a) and the ICL
baselines RS / SIIR / SITR / STTR (spec §1c).

* :func:`clip_features` encodes images or texts with ``CLIPVisionModelWithProjection.image_embeds`` /
  ``CLIPTextModelWithProjection.text_embeds`` (L2-normalised) and caches them on disk as
  safetensors, keyed by model, rows and field.
* Exact inner-product search (what FAISS ``IndexFlatIP`` computes) in torch: no FAISS needed.
* ``order`` of a top-k list: ``reversed_order=True`` (the original default) puts the most
  similar demonstration rightmost, next to the query.

This module is paper-agnostic (LIVE also retrieves demonstrations by similarity); it belongs in
``vlrepro.shared`` eventually.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from vlrepro.shared.errors import VlreproError

# ----------------------------------------------------------------------------- CLIP features (cached)


def _key(model_path: str, kind: str, values: Sequence[str]) -> str:
    h = hashlib.sha256(json.dumps([str(model_path), kind, list(values)]).encode()).hexdigest()[:16]
    return f"{kind}-{h}"


def clip_features(model_path: str | Path, kind: str, values: Sequence[Any], *, cache_dir: str | Path | None = None,
                  batch_size: int = 128, device: str = "cpu") -> torch.Tensor:
    """[len(values), D] L2-normalised CLIP embeddings of images (paths/PIL) or texts, cached on disk.

    ``kind`` is ``"image"`` or ``"text"``. The cache file name hashes the model, the kind and the
    values (image paths or strings), so a changed data set never reuses stale features.
    """
    from safetensors.torch import load_file, save_file
    from vlrepro.shared.atomic import write_atomic

    keys = [str(v) for v in values]
    cache = Path(cache_dir) / f"clip-{_key(str(model_path), kind, keys)}.safetensors" if cache_dir else None
    if cache is not None and cache.is_file():
        return load_file(str(cache))["features"]
    feats = _encode(str(model_path), kind, values, batch_size, device)
    if cache is not None:
        write_atomic(cache, lambda tmp: save_file({"features": feats.contiguous()}, tmp))
    return feats


def _encode(model_path: str, kind: str, values: Sequence[Any], batch_size: int, device: str) -> torch.Tensor:
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPTextModelWithProjection,
        CLIPVisionModelWithProjection,
    )

    from .lvlm import _load_pil

    try:
        if kind == "image":
            model = CLIPVisionModelWithProjection.from_pretrained(model_path).to(device).eval()
            proc = CLIPImageProcessor.from_pretrained(model_path)
        elif kind == "text":
            model = CLIPTextModelWithProjection.from_pretrained(model_path).to(device).eval()
            proc = AutoTokenizer.from_pretrained(model_path)
        else:
            raise ValueError(f"kind must be image or text, not {kind!r}")
    except OSError as e:
        raise VlreproError(f"cannot load CLIP {model_path!r}: {str(e).splitlines()[0]}",
                           fix="set the CLIP name/path (clip_name, mmtopk_clip_name) to a local folder or allow hub downloads") from None
    out = []
    with torch.no_grad():
        for i in range(0, len(values), batch_size):
            chunk = values[i : i + batch_size]
            if kind == "image":
                px = proc(images=[_load_pil(v) for v in chunk], return_tensors="pt")["pixel_values"].to(device)
                emb = model(pixel_values=px).image_embeds
            else:
                tok = proc([str(v) for v in chunk], padding=True, truncation=True,
                           max_length=model.config.max_position_embeddings, return_tensors="pt").to(device)
                emb = model(**tok).text_embeds
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


# ----------------------------------------------------------------------------- search


def topk_inner_product(queries: torch.Tensor, index: torch.Tensor, k: int) -> torch.Tensor:
    """Exact top-``k`` by inner product (FAISS IndexFlatIP): [Q, D] × [N, D] -> [Q, k] indices, best first.

    Ties go to the lower index (stable sort), so results are deterministic.
    """
    sims = queries.float() @ index.float().T  # [Q, N]
    return torch.sort(sims, dim=1, descending=True, stable=True).indices[:, :k]


def order_topk(ids: Sequence[int], reversed_order: bool) -> list[int]:
    """A best-first list in prompt order: reversed (most similar rightmost) or as is."""
    return list(reversed(ids)) if reversed_order else list(ids)


# ----------------------------------------------------------------------------- anchors and candidate samplers (spec §1a)


def sample_anchors(n_index: int, sample_num: int, seed: int) -> list[int]:
    """``sample_num`` anchor indices of the supporting set, seeded (the original's draw was unseeded)."""
    if sample_num > n_index:
        raise VlreproError(f"sample_num {sample_num} exceeds the supporting set ({n_index} rows)", fix="lower sample_num")
    return sorted(random.Random(seed).sample(range(n_index), sample_num))


def rand_candidates(anchor: int, n_index: int, candidate_num: int, rng: random.Random) -> list[int]:
    """RandSampler: ``candidate_num`` random indices, redrawn while the anchor is among them."""
    if candidate_num >= n_index:
        raise VlreproError(f"candidate_num {candidate_num} must be smaller than the supporting set ({n_index})",
                           fix="lower sampler.candidate_num")
    while True:
        cands = rng.sample(range(n_index), candidate_num)
        if anchor not in cands:
            return cands


def sim_candidates(anchors: Sequence[int], features: torch.Tensor, candidate_num: int) -> dict[int, list[int]]:
    """ImgSim/TextSim sampler: the ``candidate_num`` nearest neighbours of each anchor, excluding itself.

    The original keeps the top ``candidate_num + 1`` hits and drops the first, assuming it is the
    anchor; with duplicate features it may not be, so we drop the anchor by index instead.
    """
    top = topk_inner_product(features[list(anchors)], features, candidate_num + 1)
    out = {}
    for a, row in zip(anchors, top.tolist(), strict=False):
        out[int(a)] = [i for i in row if i != a][:candidate_num]
    return out


def candidate_sets(sampler: str, anchors: Sequence[int], n_index: int, candidate_num: int, seed: int,
                   image_features: torch.Tensor | None = None, text_features: torch.Tensor | None = None) -> dict[int, list[int]]:
    """Candidate (sub-supporting) set of every anchor for ``sampler`` ∈ {rand, img_sim, text_sim, mix}.

    ``mix`` = 50% random, 25% text-similar, 25% image-similar (the original's MixSimSampler, whose
    ``sample`` signature is broken at HEAD), de-duplicated and topped up at random.
    """
    rng = random.Random(seed)
    if sampler == "rand":
        return {int(a): rand_candidates(int(a), n_index, candidate_num, rng) for a in anchors}
    if sampler in ("img_sim", "text_sim"):
        feats = image_features if sampler == "img_sim" else text_features
        if feats is None:
            raise ValueError(f"{sampler} needs features")
        return sim_candidates(anchors, feats, candidate_num)
    if sampler == "mix":
        n_rand = candidate_num // 2
        n_text = candidate_num // 4
        n_img = candidate_num - n_rand - n_text
        text = sim_candidates(anchors, text_features, n_text)
        img = sim_candidates(anchors, image_features, n_img)
        out = {}
        for a in anchors:
            merged = list(dict.fromkeys(text[int(a)] + img[int(a)]))
            pool = [i for i in range(n_index) if i != a and i not in set(merged)]
            merged += rng.sample(pool, candidate_num - len(merged))
            out[int(a)] = merged
        return out
    raise VlreproError(f"unknown sampler {sampler!r}", fix="use rand_sampler, img_sim_sampler, text_sim_sampler or mix_sampler")


# ----------------------------------------------------------------------------- ICL baselines (spec §1c)


def random_retrieval(n_queries: int, n_index: int, k: int, seed: int = 42, fixed: bool = False) -> list[list[int]]:
    """RS: ``k`` random demonstrations per query, drawn as the original's random retriever does
    (``np.random.seed(seed)``, then ``np.random.choice(n_index, k, replace=False)`` for each query in
    order; one shared set if ``fixed``). A private ``RandomState`` gives the same stream without
    touching numpy's global state.
    """
    import numpy as np

    rng = np.random.RandomState(seed)
    if fixed:
        one = rng.choice(n_index, k, replace=False).tolist()
        return [list(one) for _ in range(n_queries)]
    return [rng.choice(n_index, k, replace=False).tolist() for _ in range(n_queries)]


def similarity_retrieval(query_features: torch.Tensor, index_features: torch.Tensor, k: int,
                         reversed_order: bool = True) -> list[list[int]]:
    """SIIR / SITR / STTR: top-``k`` of the index by cosine to each query, in prompt order."""
    top = topk_inner_product(query_features, index_features, k).tolist()
    return [order_topk(row, reversed_order) for row in top]
