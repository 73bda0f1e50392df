"""The ``train`` and ``eval`` verbs: resolve data first (a missing file is a one-line error), then the model."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset
from vlrepro.shared.errors import VlreproError
from vlrepro.shared.paths import require_file
from vlrepro.shared.results import result_row, write_results

from . import PAPER
from .data import (
    EpisodeTensors,
    EvalEpisodes,
    TrainEpisodes,
    imagenet100_episodes,
    isekai_episodes,
    load_eval_set,
    load_train_classes,
)
from .evaluate import predict, score, write_multitest
from .method import VQA_QUESTION_TEMPLATE, Episode, Round
from .model import IM_PATCH, add_image_tokens, load_lcl
from .train import TrainArgs, train_model

DIST = "vlrepro-lcl"
_DTYPES = {None: None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VlreproError(f"device {device!r} requested but CUDA is not available", fix="use --device cpu")
    return device


def _dtype(name: str | None, device: str) -> torch.dtype | None:
    if name not in _DTYPES:
        raise VlreproError(f"unknown torch_dtype {name!r}", fix=f"use one of {[k for k in _DTYPES if k]}")
    dt = _DTYPES[name]
    return torch.float32 if (dt in (torch.float16, torch.bfloat16) and device == "cpu") else dt


def load_model_for(cfg: DictConfig, device: str):
    """Model, tokenizer and image processor from ``model_args``; image tokens added if the tokenizer lacks them."""
    ma = cfg.model_args
    model, tokenizer, processor = load_lcl(ma.model_name_or_path, torch_dtype=_dtype(ma.get("torch_dtype"), device),
                                           vision_tower=ma.get("vision_tower"))
    if IM_PATCH not in tokenizer.get_vocab():
        add_image_tokens(tokenizer, model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token  # pad = unk (id 0), as the original
    return model.to(device), tokenizer, processor


# ----------------------------------------------------------------------------- train


class VQAv2Samples(Dataset):
    """Plain single-image VQAv2 samples in Shikra's ``vicuna_v1.1`` format (the mix1 "original tasks" side)."""

    def __init__(self, records, to_tensors: EpisodeTensors):
        self.records = records
        self.to_tensors = to_tensors

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = self.records[index]
        q = VQA_QUESTION_TEMPLATE.replace("<question>", r.question)
        rnd = Round(r.image_path, q, f"The answer is {r.multiple_choice_answer}.", template="vicuna_v1.1")
        return self.to_tensors(Episode(support=[], query=rnd), train=True)


class MixedSamples(Dataset):
    """mix1: item i draws a source with the given probabilities (normalised), then a random item of it."""

    def __init__(self, sources: list[Dataset], probabilities: list[float], seed: int):
        if len(sources) != len(probabilities) or not sources:
            raise VlreproError(f"{len(sources)} mix sources but {len(probabilities)} probabilities",
                               fix="give every data_args.mix entry its own probability")
        total = float(sum(probabilities))
        if total <= 0 or any(p < 0 for p in probabilities):
            raise VlreproError(f"mix probabilities {probabilities} must be >= 0 with a positive sum")
        self.sources, self.p, self.seed = sources, [p / total for p in probabilities], seed
        self.epoch = 0
        self.length = sum(len(s) for s in sources)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = random.Random(f"{self.seed}:{self.epoch}:{index}")
        src = rng.choices(range(len(self.sources)), weights=self.p)[0]
        ds = self.sources[src]
        if hasattr(ds, "epoch"):
            ds.epoch = self.epoch
        return ds[rng.randrange(len(ds))]


def build_train_dataset(cfg: DictConfig, tokenizer, processor, image_token_len: int) -> Dataset:
    da = cfg.data_args
    if not da.use_icl:
        raise VlreproError("data_args.use_icl=False trains plain Shikra, which LCL does not do",
                           fix="pass data_args.use_icl=True (as the seed commands do)")
    train_file = require_file(da.train.filename, dataset="imagenet", how="get docs/train900_pairs.jsonl from the LCL repo")
    classes = load_train_classes(Path(train_file).parent, Path(train_file).name)
    tt = EpisodeTensors(tokenizer, processor, image_token_len, Path(da.train.image_folder), dataset="imagenet")
    episodes = TrainEpisodes(classes, tt, shot=int(da.shot), policy=str(da.policy), seed=int(cfg.seed))
    if not da.use_mix:
        return episodes
    from vlrepro.shared.data import load_vqa

    sources, probs = [], []
    for entry in da.mix:
        if entry.kind == "episodes":
            sources.append(episodes)
        elif entry.kind == "vqav2":
            records = load_vqa("vqav2", entry.get("split", "train"), root=entry.get("root"))
            sources.append(VQAv2Samples(records, EpisodeTensors(tokenizer, processor, image_token_len, Path("/"), dataset="coco")))
        else:
            raise VlreproError(f"unknown mix source kind {entry.kind!r}", fix="use episodes or vqav2")
        probs.append(float(entry.probability))
    return MixedSamples(sources, probs, int(cfg.seed))


def run_train(cfg: DictConfig) -> int:
    device = resolve_device(cfg.device)
    require_file(cfg.data_args.train.filename, dataset="imagenet", how="get docs/train900_pairs.jsonl from the LCL repo")
    model, tokenizer, processor = load_model_for(cfg, device)
    dataset = build_train_dataset(cfg, tokenizer, processor, model.config.image_token_len)
    args = TrainArgs.from_cfg(OmegaConf.to_container(cfg.training_args, resolve=True))
    final = Path(args.output_dir) / "final"
    summary = train_model(model, tokenizer, dataset, args, device=device, final_dir=final)
    processor.save_pretrained(final)
    print(f"[lcl] trained {summary.train_steps} steps: loss {summary.train_loss_first:.4f} -> {summary.train_loss_last:.4f}; saved {final}")
    return 0


# ----------------------------------------------------------------------------- eval


def eval_sets(cfg: DictConfig) -> dict[str, tuple[str, list, Path, dict]]:
    """KEY -> (kind, rows, image_root, cfg) for every multitest set; files are checked before any model loads."""
    if not cfg.data_args.multitest:
        raise VlreproError("no evaluation set configured", fix="use experiment=lcl_eval_isekai_10|lcl_eval_isekai_pair|lcl_eval_imagenet100")
    out = {}
    for key, spec in cfg.data_args.multitest.items():
        ds = "imagenet" if spec.kind == "imagenet100" else "isekai"
        how = ("rebuild it with `vlrepro data prepare imagenet`" if spec.kind == "imagenet100"
               else "download ISEKAI-Portal/ISEKAI-10 and ISEKAI-pair into $ISEKAI_PATH")
        require_file(spec.cfg.filename, dataset=ds, how=how)
        rows, root = load_eval_set(spec.kind, spec.cfg.filename, spec.cfg.get("image_folder"))
        out[key] = (spec.kind, rows, root, spec.cfg)
    return out


def build_eval_episodes(kind: str, rows, spec, shot: int, seed: int, limit: int | None) -> list[Episode]:
    if kind == "imagenet100":
        eps = imagenet100_episodes(rows, shot, int(spec.get("sample_per_class", 50)), seed)
    else:
        eps = isekai_episodes(rows, shot, seed)
    return eps[:limit] if limit else eps


def evaluate_sets(model, tokenizer, processor, sets, *, shots: list[int], seed: int, batch_size: int,
                  max_new_tokens: int, device: str, output_dir: Path, model_name: str, config: dict,
                  paper_values: dict | None = None, train: dict | None = None, limit: int | None = None) -> list[dict]:
    """Run every (set, shot); write multitest files per set/shot and return results rows."""
    rows_out = []
    for key, (kind, rows, root, spec) in sets.items():
        for shot in shots:
            episodes = build_eval_episodes(kind, rows, spec, shot, seed, limit)
            tt = EpisodeTensors(tokenizer, processor, model.config.image_token_len, root, dataset="imagenet" if kind == "imagenet100" else "isekai")
            preds = predict(model, tokenizer, EvalEpisodes(episodes, tt), batch_size=batch_size,
                            max_new_tokens=max_new_tokens, device=device)
            metrics = score(preds)
            tag = key if len(shots) == 1 else f"{key}_shot{shot}"
            write_multitest(preds, metrics, output_dir, tag)
            n_total = 2 * shot
            pv = (paper_values or {}).get(n_total)
            print(f"[lcl] {key} shot={shot} (paper {n_total}-shot): accuracy {metrics['accuracy']:.4f} over {metrics['n']}"
                  + (f" (paper {pv})" if pv is not None else ""))
            rows_out.append(result_row(
                package=DIST, paper=PAPER, task="lcl_2way", dataset=key, split=f"{n_total}-shot", n=metrics["n"],
                metric="accuracy", value=metrics["accuracy"], model=model_name, device=device,
                config=config, paper_value=pv, train=train, shot_per_class=shot,
                target_failed=metrics["target_failed"], failed=metrics["failed"],
            ))
    return rows_out


def run_eval(cfg: DictConfig) -> int:
    device = resolve_device(cfg.device)
    sets = eval_sets(cfg)  # data first: a missing file fails before minutes of model loading
    model, tokenizer, processor = load_model_for(cfg, device)
    sweep = cfg.data_args.get("sweep_shots")
    shots = [int(s) for s in sweep] if sweep else [int(cfg.data_args.shot)]
    out_dir = Path(cfg.training_args.output_dir)
    rows = evaluate_sets(
        model, tokenizer, processor, sets, shots=shots, seed=int(cfg.seed),
        batch_size=int(cfg.training_args.per_device_eval_batch_size),
        max_new_tokens=int(cfg.data_args.gen_kwargs.max_new_tokens), device=device, output_dir=out_dir,
        model_name=str(cfg.model_args.model_name_or_path), config=OmegaConf.to_container(cfg, resolve=True),
        paper_values={int(k): float(v) for k, v in (cfg.get("paper_values") or {}).items()},
        limit=cfg.training_args.get("limit"),
    )
    path = write_results(out_dir, rows)
    print(f"[lcl] wrote {path}")
    return 0
