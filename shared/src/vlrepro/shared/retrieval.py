"""In-context demonstration (ICD) retrieval over CLIP features, as LIVE's and Lever-LM's baselines use.

Modes (Lever-LM §1c names in brackets):
- ``random``  [RS]: ``k`` demonstrations drawn without replacement with a seeded generator;
- ``i2i``     [SIIR]: query image -> pool images;
- ``t2t``     [STTR]: query text -> pool texts;
- ``i2t``     [SITR]: query image -> pool texts.
Similarity is the inner product of L2-normalised CLIP embeddings (cosine), exactly what the
originals' FAISS ``IndexFlatIP`` computes; an exact ``torch.topk`` replaces FAISS. Ties are broken
by the lower pool index, so results are deterministic.

``order="most_similar_last"`` (the originals' ``mmtopk_reversed_order=True`` default) puts the most
similar demonstration rightmost, next to the query; ``"most_similar_first"`` the reverse.

Features are computed once per (model, items) and cached on disk as safetensors, keyed by the
model path and a hash of the item keys (image paths or texts).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from .atomic import write_atomic

Mode = Literal["random", "i2i", "t2t", "i2t"]
Order = Literal["most_similar_last", "most_similar_first"]


def random_demonstrations(
    n_queries: int, pool_size: int, k: int, *, seed: int, exclude_self: bool = False
) -> list[list[int]]:
    """``k`` distinct pool indices per query, seeded; with ``exclude_self`` query i never gets index i."""
    need = k + (1 if exclude_self else 0)
    if need > pool_size:
        raise ValueError(f"cannot draw {k} demonstrations from a pool of {pool_size}")
    g = torch.Generator().manual_seed(seed)
    out = []
    for q in range(n_queries):
        perm = torch.randperm(pool_size, generator=g).tolist()
        if exclude_self:
            perm = [i for i in perm if i != q]
        out.append(perm[:k])
    return out


def topk_similar(
    query: torch.Tensor,
    pool: torch.Tensor,
    k: int,
    *,
    order: Order = "most_similar_last",
    exclude: Sequence[int | None] | None = None,
) -> list[list[int]]:
    """Indices of the ``k`` most similar pool rows for each query row (cosine similarity).

    Args:
        query: (Q, D) features; pool: (N, D) features (normalised here).
        exclude: per query, a pool index to leave out (the query itself when the pool is the train set).
    """
    q = torch.nn.functional.normalize(query.float(), dim=-1)  # (Q, D)
    p = torch.nn.functional.normalize(pool.float(), dim=-1)  # (N, D)
    sim = q @ p.T  # (Q, N)
    if exclude is not None:
        for i, j in enumerate(exclude):
            if j is not None:
                sim[i, j] = float("-inf")
    if k > sim.shape[1] - (1 if exclude is not None else 0):
        raise ValueError(f"cannot retrieve {k} demonstrations from a pool of {sim.shape[1]}")
    # stable tie-break by lower index: sort by (-sim, index)
    idx = torch.argsort(-sim, dim=1, stable=True)[:, :k]  # (Q, k), most similar first
    rows = idx.tolist()
    if order == "most_similar_last":
        rows = [r[::-1] for r in rows]
    elif order != "most_similar_first":
        raise ValueError(f"unknown order {order!r}")
    return rows


def _cache_path(cache_dir: Path, model: str, kind: str, keys: Sequence[str]) -> Path:
    h = hashlib.sha256(json.dumps([model, kind, list(keys)]).encode()).hexdigest()[:20]
    return cache_dir / f"clip-{kind}-{h}.safetensors"


@torch.no_grad()
def clip_features(
    model_name_or_path: str,
    items: Sequence,
    *,
    kind: Literal["image", "text"],
    keys: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> torch.Tensor:
    """L2-normalised CLIP ``image_embeds`` or ``text_embeds`` of ``items``: (N, D) float32.

    ``items`` are PIL images or paths (``kind="image"``) or strings (``kind="text"``); ``keys``
    identify them for the cache (default: ``str(item)``). With ``cache_dir`` a second call with the
    same model and keys loads the features from disk instead of running CLIP.
    """
    from safetensors.torch import load_file, save_file

    keys = [str(x) for x in items] if keys is None else list(keys)
    if len(keys) != len(items):
        raise ValueError("keys and items differ in length")
    path = _cache_path(Path(cache_dir), model_name_or_path, kind, keys) if cache_dir else None
    if path is not None and path.is_file():
        return load_file(str(path))["features"]

    import transformers
    from PIL import Image

    from .errors import load_pretrained

    model = load_pretrained(transformers.CLIPModel, model_name_or_path, what="CLIP model").to(device).eval()
    processor = load_pretrained(transformers.CLIPProcessor, model_name_or_path, what="CLIP processor")
    feats = []
    for start in range(0, len(items), batch_size):
        batch = list(items[start : start + batch_size])
        if kind == "image":
            imgs = [Image.open(x).convert("RGB") if isinstance(x, (str, Path)) else x.convert("RGB") for x in batch]
            inputs = processor(images=imgs, return_tensors="pt").to(device)
            emb = model.get_image_features(**inputs)
        else:
            inputs = processor(text=batch, return_tensors="pt", padding=True, truncation=True).to(device)
            emb = model.get_text_features(**inputs)
        feats.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
    features = torch.cat(feats) if feats else torch.zeros(0, model.config.projection_dim)
    if path is not None:
        write_atomic(path, lambda tmp: save_file({"features": features.contiguous()}, tmp))
    return features


def retrieve_demonstrations(
    mode: Mode,
    k: int,
    *,
    n_queries: int,
    pool_size: int,
    seed: int = 0,
    query_image: torch.Tensor | None = None,
    query_text: torch.Tensor | None = None,
    pool_image: torch.Tensor | None = None,
    pool_text: torch.Tensor | None = None,
    order: Order = "most_similar_last",
    exclude: Sequence[int | None] | None = None,
) -> list[list[int]]:
    """One entry point for the four modes; features are (Q, D) / (N, D) tensors from :func:`clip_features`."""
    if mode == "random":
        return random_demonstrations(n_queries, pool_size, k, seed=seed, exclude_self=exclude is not None)
    pairs = {"i2i": (query_image, pool_image), "t2t": (query_text, pool_text), "i2t": (query_image, pool_text)}
    if mode not in pairs:
        raise ValueError(f"unknown retrieval mode {mode!r}; choose random, i2i, t2t or i2t")
    q, p = pairs[mode]
    if q is None or p is None:
        raise ValueError(f"mode {mode} needs query and pool features")
    return topk_similar(q, p, k, order=order, exclude=exclude)
