"""``check_dataset``: every missing or malformed file of a dataset, each with how to get it.

A check runs the same readers as training and evaluation, so "ok" means they will load; then
it stats every image the files name (a stat per image: seconds for COCO's 120k). Missing images
are summarised per folder (first few names and a count) rather than one line per image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import VlreproError
from ..paths import DATASET_VARIABLES, dataset_dir
from . import coco, episodes, lavin, llava, mme, scienceqa, vqa
from ._io import fix_for
from .sources import DATASET_HOW, how

DATASETS = ("vqav2", "okvqa", "coco2014", "coco2017", "scienceqa", "llava", "imagenet", "isekai", "mme")
MAX_LISTED = 3


def _dirs(root: str | Path | None) -> Callable[[str], Path]:
    """Folder of a dataset: ``root/<sub>`` when a data root is given, else the usual resolution."""
    if root is None:
        return dataset_dir
    return lambda name: Path(root) / DATASET_VARIABLES[name][1]


def _try(problems: list[str], fn: Callable[[], object]) -> object | None:
    """Run a reader; a VlreproError becomes one problem line."""
    try:
        return fn()
    except VlreproError as e:
        problems.append(e.one_line())
        return None


def _missing_images(paths: Iterable[Path], dataset: str, what: str) -> list[str]:
    """One line per folder with missing images: a few names, the count, how to get them."""
    by_dir: dict[Path, list[str]] = {}
    for p in paths:
        if not p.is_file():
            by_dir.setdefault(p.parent, []).append(p.name)
    out = []
    for folder, names in sorted(by_dir.items()):
        shown = ", ".join(names[:MAX_LISTED]) + (", …" if len(names) > MAX_LISTED else "")
        var, sub = DATASET_VARIABLES[dataset]
        fix = how(folder.name) if folder.name in ("train2014", "val2014", "train2017", "val2017") else DATASET_HOW.get(
            dataset, f"see the seed README's data section ({var})")
        out.append(f"{len(names)} {what} missing in {folder} ({shown}) — set {var} (or VLREPRO_DATA, which holds "
                   f"{sub}/); {fix}")
    return out


def _missing_files(paths: Iterable[Path], dataset: str) -> list[str]:
    """Every absent file at once (a reader stops at the first), so one check lists them all."""
    return [f"file not found: {p} — {fix_for(p, dataset)}" for p in paths if not p.is_file()]


def _check_vqa(name: str, d: Callable[[str], Path]) -> list[str]:
    problems: list[str] = []
    for split in vqa.VQA_SPLITS:
        q, a = vqa.vqa_files(name, split, d(name))
        missing = _missing_files([q, a], name)
        if missing:
            problems += missing
            continue
        recs = _try(problems, lambda q=q, a=a, split=split: vqa.load_vqa_files(
            q, a, vqa.coco2014_image_dir(split, d("coco")), dataset=name))
        if recs:
            problems += _missing_images(sorted({r.image_path for r in recs}), "coco", "COCO images")
    return problems


def _check_coco(year: int, d: Callable[[str], Path]) -> list[str]:
    problems: list[str] = []
    for split in ("train", "val"):
        missing = _missing_files([coco.coco_caption_paths(year, split, d("coco"))[0]], "coco")
        if missing:
            problems += missing
            continue
        recs = _try(problems, lambda split=split: coco.load_coco_captions(year, split, d("coco")))
        if recs:
            problems += _missing_images([r.image_path for r in recs], "coco", "COCO images")
    if year == 2014:
        path = d("coco") / "dataset_coco.json"
        for split in ("train", "val", "test"):
            if _try(problems, lambda split=split: coco.load_karpathy(path, split, d("coco") / "mscoco2014")) is None:
                break
        # BLIP's files (ADEM-VL) are optional — it downloads them itself — but must parse when present
        for split in lavin.BLIP_SPLITS:
            blip = d("coco") / "coco_caption" / f"coco_karpathy_{split}.json"
            if blip.is_file():
                _try(problems, lambda blip=blip: lavin.load_blip_karpathy(blip, d("coco") / "mscoco2014"))
    return problems


def _check_scienceqa(d: Callable[[str], Path]) -> list[str]:
    paths = scienceqa.scienceqa_paths(d("scienceqa"))
    problems = _missing_files([paths["problems"], paths["pid_splits"], paths["captions"]], "scienceqa")
    if problems:
        return problems
    for split in ("train", "val", "test"):
        recs = _try(problems, lambda split=split: scienceqa.load_scienceqa(split, d("scienceqa")))
        if recs is None:
            break
        problems += _missing_images([r.image_path for r in recs if r.image_path], "scienceqa", "ScienceQA images")
    lavin_file = d("scienceqa") / "all_data.json"
    if lavin_file.is_file():  # ADEM-VL's instruction data, optional
        _try(problems, lambda: lavin.load_lavin_instructions(lavin_file, d("coco") / "mscoco2014" / "train2014"))
    return problems


def _check_llava(d: Callable[[str], Path]) -> list[str]:
    problems: list[str] = []
    paths = llava.llava_paths(d("llava"))
    for key in ("pretrain", "instruct"):
        recs = _try(problems, lambda key=key: llava.load_llava(paths[key], paths["images"]))
        if recs:
            problems += _missing_images([r.image_path for r in recs if r.image_path], "llava", "LLaVA images")
    return problems


def _check_imagenet(d: Callable[[str], Path]) -> list[str]:
    problems: list[str] = []
    root = d("imagenet")
    train = _try(problems, lambda: episodes.load_imagenet_train(root))
    if train:
        rels = {s for c in train for s in c.samples} | {nb.image for c in train for nb in c.neighbors}
        problems += _missing_images([root / r for r in sorted(rels)], "imagenet", "ImageNet images")
    test = _try(problems, lambda: episodes.load_imagenet_test(root))
    if test:
        rels = {s for c in test for s in c.context_samples + c.test_samples}
        problems += _missing_images([root / r for r in sorted(rels)], "imagenet", "ImageNet images")
        if train:
            overlap = {c.class_id for c in train} & {c.class_id for c in test}
            if overlap:
                problems.append(f"{root / episodes.TEST_PAIRS}: classes {sorted(overlap, key=int)} are also training "
                                f"classes in {episodes.TRAIN_PAIRS} — {how(episodes.TEST_PAIRS)}")
    return problems


def _check_isekai(d: Callable[[str], Path]) -> list[str]:
    problems: list[str] = []
    rels: set[str] = set()
    for subset in episodes.ISEKAI_SUBSETS:
        recs = _try(problems, lambda subset=subset: episodes.load_isekai(subset, d("isekai")))
        rels |= {r for e in recs or [] for r in [e.image_name, *e.positive_list, *e.negative_list]}
    # both subsets draw on the same ISEKAI-20 images: report each missing one once
    return problems + _missing_images([d("isekai") / r for r in sorted(rels)], "isekai", "ISEKAI images")


def _check_mme(d: Callable[[str], Path]) -> list[str]:
    problems: list[str] = []
    root = mme.mme_root(d("mme"))
    if not root.is_dir():
        return [f"MME folder not found: {root} — {fix_for(Path(mme.RELEASE_DIR), 'mme')}"]
    present = set(mme.mme_subtasks(root))
    for task in mme.SUBTASKS:
        if task not in present:
            problems.append(f"MME subtask folder not found: {root / task} — {fix_for(Path(mme.RELEASE_DIR), 'mme')}")
            continue
        _try(problems, lambda task=task: mme.load_mme_subtask(root / task))
    return problems


def check_dataset(dataset: str, root: str | Path | None = None) -> list[str]:
    """Problems of ``dataset`` (one line each, with the fix); empty when every reader loads.

    ``root`` is a data root like ``VLREPRO_DATA`` (``root/vqav2``, ``root/coco``, …); without it
    each folder resolves as the readers do (``VQAV2_PATH`` > ``VLREPRO_DATA/vqav2``, …).
    ``dataset="all"`` checks every dataset; ``"coco"`` both COCO years.
    """
    if dataset == "coco":  # the folder name, as error hints from paths.require_file spell it
        return list(dict.fromkeys(check_dataset("coco2014", root) + check_dataset("coco2017", root)))
    if dataset == "all":
        # datasets share folders (VQAv2, OK-VQA and COCO 2014 share the COCO images): list each line once
        return list(dict.fromkeys(p for name in DATASETS for p in check_dataset(name, root)))
    d = _dirs(root)
    checks: dict[str, Callable[[], list[str]]] = {
        "vqav2": lambda: _check_vqa("vqav2", d),
        "okvqa": lambda: _check_vqa("okvqa", d),
        "coco2014": lambda: _check_coco(2014, d),
        "coco2017": lambda: _check_coco(2017, d),
        "scienceqa": lambda: _check_scienceqa(d),
        "llava": lambda: _check_llava(d),
        "imagenet": lambda: _check_imagenet(d),
        "isekai": lambda: _check_isekai(d),
        "mme": lambda: _check_mme(d),
    }
    if dataset not in checks:
        raise VlreproError(f"unknown dataset {dataset!r}", fix=f"choose one of {', '.join(DATASETS)} or all")
    return checks[dataset]()
