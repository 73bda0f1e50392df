"""2-way episode evaluation (spec §3): greedy generation, the substring accuracy rule, multitest outputs.

Outputs in ``output_dir`` (names of the original's ``multitest`` mode, one ``KEY`` per set):
``multitest_<KEY>_extra_prediction.jsonl`` (``{"pred", "target"}`` per line, dataset order, both
without special tokens as the original wrote them, except that the target keeps ``<image>`` where the
original's skipped image tokens left nothing; written atomically — the original appended, so re-runs
duplicated lines) and ``multitest_<KEY>_results.json``
(``multitest_<KEY>_accuracy``, ``_target_failed``, ``_failed``).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from vlrepro.shared.atomic import atomic_open, write_json_atomic
from vlrepro.shared.metrics.lcl import lcl_accuracy

from .data import collate


def accuracy_rule(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The LCL accuracy rule (spec §3.2): ``vlrepro.shared.metrics.lcl.lcl_accuracy`` on rows with their negative."""
    return lcl_accuracy(rows)


@torch.no_grad()
def predict(model, tokenizer, dataset, *, batch_size: int = 1, max_new_tokens: int = 1024, device: str = "cpu",
            progress: bool = True) -> list[dict[str, Any]]:
    """Greedy answers for every episode, in dataset order: rows ``{"pred", "pred_raw", "target", "negative"}``."""
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        collate_fn=partial(collate, pad_id=tokenizer.pad_token_id or 0, left_pad=True))
    rows: list[dict[str, Any]] = []
    for batch in tqdm(loader, desc="eval", disable=not progress):
        new = model.greedy_generate(
            batch["input_ids"].to(device), batch["attention_mask"].to(device), batch["images"].to(device),
            max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id or 0,
        )
        for i in range(new.shape[0]):
            toks = [t for t in new[i].tolist() if t != (tokenizer.pad_token_id or 0)]
            rows.append({
                # the metric reads the prediction with special tokens kept (as the original did)
                "pred_raw": tokenizer.decode(toks, skip_special_tokens=False),
                "pred": tokenizer.decode(toks, skip_special_tokens=True),
                "target": batch["target"][i],
                "negative": batch["negative"][i],
            })
    return rows


def write_multitest(rows: list[dict[str, Any]], metrics: dict[str, Any], output_dir: str | Path, key: str) -> Path:
    """The original's per-set outputs: predictions JSONL ({"pred", "target"}) and the results JSON."""
    out = Path(output_dir)
    pred_path = out / f"multitest_{key}_extra_prediction.jsonl"
    with atomic_open(pred_path, "w", encoding="utf-8") as f:
        for r in rows:
            # the original decoded the target with special tokens skipped: no trailing </s>
            target = r["target"][: -len("</s>")] if r["target"].endswith("</s>") else r["target"]
            f.write(json.dumps({"pred": r["pred"], "target": target}, ensure_ascii=False) + "\n")
    write_json_atomic(out / f"multitest_{key}_results.json", {
        f"multitest_{key}_accuracy": metrics["accuracy"],
        f"multitest_{key}_target_failed": metrics["target_failed"],
        f"multitest_{key}_failed": metrics["failed"],
    })
    return pred_path


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy over predictions, reading ``pred_raw`` (special tokens kept) as the original did."""
    return accuracy_rule([{"pred": r.get("pred_raw", r["pred"]), "target": r["target"], "negative": r["negative"]}
                          for r in rows])
