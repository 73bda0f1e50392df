"""``make_mini``: small data sets in exactly the official file formats and folder layouts.

The pictures are generated (coloured shapes, :mod:`.shapes`) and every question, answer,
caption, choice and label is derived from the picture's scene, so a model or a metric run on a
mini set sees consistent data. Everything is a pure function of ``seed``: the same seed writes
the same bytes. ``root`` is treated as a ``VLREPRO_DATA`` root (``root/vqav2``, ``root/coco``, …).

``n`` is the number of train items (questions, images, problems, conversations, images per
class, …; see each writer); val/test splits get ``max(2, n // 2)``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import shapes as S
from .shapes import Scene, Shape

MINI_DATASETS = ("vqav2", "okvqa", "coco2014", "coco2017", "scienceqa", "llava", "imagenet", "isekai", "mme")
DEFAULT_N = 32

# --------------------------------------------------------------------------- shared helpers


def _write_json(path: Path, obj: Any) -> None:
    """Compact JSON like the official releases, written through a rename so no reader sees half a file.

    No fsync: a mini set is regenerated in a second, and ~60 fsyncs would triple the time.
    """
    S.write_bytes(path, json.dumps(obj).encode("utf-8"))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    S.write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8"))


def _write_text(path: Path, text: str) -> None:
    S.write_bytes(path, text.encode("utf-8"))


def _sizes(n: int | None) -> tuple[int, int]:
    train = DEFAULT_N if n is None else max(2, int(n))
    return train, max(2, train // 2)


def _coco_ids(tag: str, k: int, seed: int) -> list[int]:
    """``k`` distinct COCO-like image ids; train and val ranges are disjoint as in COCO 2014."""
    lo, hi = (1, 290_000) if tag.startswith("train") else (290_000, 581_929)
    return sorted(random.Random(f"ids-{tag}-{seed}").sample(range(lo, hi), k))


def _coco_file(year: int, split: str, image_id: int) -> str:
    if year == 2014:
        return f"COCO_{split}2014_{image_id:012d}.jpg"
    return f"{image_id:012d}.jpg"


def _save_coco_images(root: Path, year: int, split: str, ids: list[int], seed: int) -> None:
    folder = root / "coco" / f"mscoco{year}" / f"{split}{year}"
    for iid in ids:
        S.save(S.coco_scene(seed, iid), folder / _coco_file(year, split, iid))


def _unique(scene: Scene, attr: str) -> list[Shape]:
    """Shapes whose ``attr`` (shape or colour) occurs once in the scene, so a question is unambiguous."""
    vals = [getattr(s, attr) for s in scene]
    return [s for s in scene if vals.count(getattr(s, attr)) == 1]


# --------------------------------------------------------------------------- VQAv2 / OK-VQA

_VQA_INFO = {"description": "This is v2.0 of the VQA dataset.", "url": "http://visualqa.org", "version": "2.0",
             "year": 2017, "contributor": "VQA Team", "date_created": "2017-04-26 17:07:13"}
_VQA_LICENSE = {"url": "http://creativecommons.org/licenses/by/4.0/",
                "name": "Creative Commons Attribution 4.0 International License"}


def _ten(canonical: str, variants: list[str], rng: random.Random) -> list[str]:
    """Ten human answers: mostly the canonical one, plus realistic variants (case, punctuation, words)."""
    k = rng.randint(1, min(3, len(variants))) if variants else 0
    answers = [canonical] * (10 - k) + rng.sample(variants, k)
    rng.shuffle(answers)
    return answers


def _vqa_questions(scene: Scene, rng: random.Random) -> list[tuple[str, str, str, str, list[str]]]:
    """Candidate ``(question, question_type, answer_type, answer, variants)`` for a scene."""
    out = []
    for s in _unique(scene, "shape"):
        out.append((f"What color is the {s.shape}?", "what color is the", "other", s.colour,
                    [s.colour.capitalize(), f"{s.colour}.", f"{s.colour} {s.shape}"]))
    for s in _unique(scene, "colour"):
        out.append((f"What shape is the {s.colour} object?", "what", "other", s.shape,
                    [f"{s.shape}s", f"a {s.shape}", s.shape.capitalize()]))
    shape = rng.choice(sorted({s.shape for s in scene}))
    c = S.count(scene, shape)
    out.append((f"How many {shape}s are there?", "how many", "number", str(c),
                [S.NUMBER_WORDS[c], f"{c} ", f"{S.NUMBER_WORDS[c]}."]))
    if rng.random() < 0.5:
        s = rng.choice(scene)
        out.append((f"Is there a {s.colour} {s.shape} in the picture?", "is there a", "yes/no", "yes",
                    ["yes.", "Yes", "yes!"]))
    else:
        present = {(s.colour, s.shape) for s in scene}
        absent = [(c, sh) for c in sorted(S.COLOURS) for sh in S.SHAPES if (c, sh) not in present]
        c_, sh_ = rng.choice(absent)
        out.append((f"Is there a {c_} {sh_} in the picture?", "is there a", "yes/no", "no", ["no.", "No", "nope"]))
    return out


def _make_vqav2(root: Path, seed: int, n: int | None) -> None:
    """``root/vqav2/`` official four files; ``n`` questions in train (2 per image), images in coco/mscoco2014."""
    n_train, n_val = _sizes(n)
    for split, nq in (("train", n_train), ("val", n_val)):
        rng = random.Random(f"vqav2-{split}-{seed}")
        ids = _coco_ids(f"{split}2014", (nq + 1) // 2, seed)
        questions, annotations = [], []
        for iid in ids:
            scene = S.coco_scene(seed, iid)
            cands = _vqa_questions(scene, rng)
            for k, (q, qtype, atype, ans, variants) in enumerate(rng.sample(cands, min(2, len(cands)))):
                if len(questions) == nq:
                    break
                qid = iid * 1000 + k  # VQAv2 convention: image_id * 1000 + k
                questions.append({"image_id": iid, "question": q, "question_id": qid})
                answers = _ten(ans, variants, rng)
                annotations.append({
                    "question_type": qtype, "multiple_choice_answer": ans,
                    "answers": [{"answer": a, "answer_confidence": rng.choice(["yes", "yes", "yes", "maybe"]),
                                 "answer_id": j + 1} for j, a in enumerate(answers)],
                    "image_id": iid, "answer_type": atype, "question_id": qid})
        _save_coco_images(root, 2014, split, sorted({q["image_id"] for q in questions}), seed)
        d = root / "vqav2"
        _write_json(d / f"v2_OpenEnded_mscoco_{split}2014_questions.json",
                    {"info": _VQA_INFO, "task_type": "Open-Ended", "data_type": "mscoco", "license": _VQA_LICENSE,
                     "data_subtype": f"{split}2014", "questions": questions})
        _write_json(d / f"v2_mscoco_{split}2014_annotations.json",
                    {"info": _VQA_INFO, "license": _VQA_LICENSE, "data_subtype": f"{split}2014",
                     "annotations": annotations, "data_type": "mscoco"})


#: colour -> [(raw_answer, stemmed answer)], OK-VQA v1.1 stores both
OKVQA_FRUIT = {
    "red": [("tomatoes", "tomato"), ("strawberries", "strawberry"), ("apple", "apple"), ("cherries", "cherry")],
    "yellow": [("bananas", "banana"), ("lemon", "lemon"), ("lemons", "lemon")],
    "green": [("limes", "lime"), ("broccoli", "broccoli"), ("kiwi", "kiwi")],
    "blue": [("blueberries", "blueberry"), ("blueberry", "blueberry")],
}


def _okvqa_question(scene: Scene, rng: random.Random) -> tuple[str, str, list[tuple[str, str]]]:
    """An outside-knowledge question about the scene, its OK-VQA category code and 5 (raw, stemmed) answers."""
    if rng.random() < 0.6:
        s = rng.choice(scene)
        pool = OKVQA_FRUIT[s.colour]
        five = [pool[0], pool[0], pool[0]] + [rng.choice(pool), rng.choice(pool)]
        return f"Which fruit is usually the same color as the {s.shape}?", "five", five
    s = rng.choice(scene)
    raw = [f"{s.shape}s", s.shape, s.shape, f"a {s.shape}", s.shape]
    return (f"What is the {s.colour} shape called in geometry?", "nine",
            [(r, s.shape) for r in raw])


def _make_okvqa(root: Path, seed: int, n: int | None) -> None:
    """``root/okvqa/`` OK-VQA v1.1 files (question_id = image_id*10 + k; answers 5 × 2 with raw_answer)."""
    n_train, n_val = _sizes(n)
    for split, nq in (("train", n_train), ("val", n_val)):
        rng = random.Random(f"okvqa-{split}-{seed}")
        ids = _coco_ids(f"{split}2014", nq, seed)
        questions, annotations = [], []
        for iid in ids:
            scene = S.coco_scene(seed, iid)
            q, qtype, five = _okvqa_question(scene, rng)
            qid = iid * 10 + 5
            questions.append({"image_id": iid, "question": q, "question_id": qid})
            ten = [a for a in five for _ in range(2)]  # OK-VQA repeats each of the 5 answers twice
            annotations.append({
                "image_id": iid, "answer_type": "other", "question_type": qtype, "question_id": qid,
                "answers": [{"answer_id": j + 1, "raw_answer": raw, "answer_confidence": "yes", "answer": stem}
                            for j, (raw, stem) in enumerate(ten)],
                "confidence": rng.choice([3, 4, 5])})
        _save_coco_images(root, 2014, split, ids, seed)
        d = root / "okvqa"
        lic = {"url": "http://creativecommons.org/licenses/by/4.0/", "name": "Creative Commons Attribution 4.0 International License"}
        info = {"description": "This is v1.1 of the OK-VQA dataset.", "url": "http://okvqa.allenai.org/",
                "version": "1.1", "year": 2019, "contributor": "OK-VQA Team", "date_created": "2019-06-03"}
        _write_json(d / f"OpenEnded_mscoco_{split}2014_questions.json",
                    {"license": lic, "data_subtype": f"{split}2014", "task_type": "Open-Ended",
                     "questions": questions, "info": info, "data_type": "mscoco"})
        _write_json(d / f"mscoco_{split}2014_annotations.json",
                    {"license": lic, "data_subtype": f"{split}2014", "annotations": annotations,
                     "info": info, "data_type": "mscoco"})


# --------------------------------------------------------------------------- COCO captions + Karpathy

_COCO_LICENSES = [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1,
                   "name": "Attribution-NonCommercial-ShareAlike License"}]


def _captions(scene: Scene, rng: random.Random) -> list[str]:
    """Five COCO-style captions of one scene, with the usual case, punctuation and wording noise."""
    base = S.caption(scene)
    n = len(scene)
    word = S.NUMBER_WORDS[n]
    caps = [
        base[0].upper() + base[1:] + ".",
        base,
        f"{word.capitalize()} shape{'s' if n > 1 else ''} on a white background.",
        f"A picture of {base} ",
        f"there {'are' if n > 1 else 'is'} {base} on a plain white background",
    ]
    rng.shuffle(caps)
    return caps


def _make_coco(root: Path, year: int, seed: int, n: int | None) -> None:
    """``root/coco/mscoco{year}/{annotations/captions_{split}{year}.json, {split}{year}/…jpg}``."""
    n_train, n_val = _sizes(n)
    per_split: dict[str, list[int]] = {}
    for split, k in (("train", n_train), ("val", n_val)):
        rng = random.Random(f"coco{year}-{split}-{seed}")
        ids = _coco_ids(f"{split}2014" if year == 2014 else f"{split}2017", k, seed)
        per_split[split] = ids
        images, anns = [], []
        for iid in ids:
            images.append({"license": 1, "file_name": _coco_file(year, split, iid),
                           "coco_url": f"http://images.cocodataset.org/{split}{year}/{_coco_file(year, split, iid)}",
                           "height": S.SIZE, "width": S.SIZE, "date_captured": "2013-11-14 16:28:13",
                           "flickr_url": "http://farm1.staticflickr.com/1/1_1_z.jpg", "id": iid})
            for cap in _captions(S.coco_scene(seed, iid), rng):
                anns.append({"image_id": iid, "id": 0, "caption": cap})
        # COCO's annotation list is not grouped by image; interleave, then number ids
        rng.shuffle(anns)
        for j, a in enumerate(anns):
            a["id"] = 100_000 + j
        _save_coco_images(root, year, split, ids, seed)
        info = {"description": f"COCO {year} Dataset", "url": "http://cocodataset.org", "version": "1.0",
                "year": year, "contributor": "COCO Consortium", "date_created": f"{year}/09/01"}
        _write_json(root / "coco" / f"mscoco{year}" / "annotations" / f"captions_{split}{year}.json",
                    {"info": info, "licenses": _COCO_LICENSES, "images": images, "annotations": anns})
    if year == 2014:
        _write_karpathy(root, per_split, seed)


def _tokens(text: str) -> list[str]:
    return "".join(ch if ch.isalnum() or ch == " " else " " for ch in text.lower()).split()


def _write_karpathy(root: Path, per_split: dict[str, list[int]], seed: int) -> None:
    """``root/coco/dataset_coco.json``: train2014 → train; val2014 → val / test / restval as Karpathy did."""
    rng = random.Random(f"karpathy-{seed}")
    images, sentid = [], 0
    val_ids = per_split["val"]
    k = max(1, len(val_ids) // 3)
    split_of = {iid: "train" for iid in per_split["train"]}
    split_of.update({iid: ("val" if i < k else "test" if i < 2 * k else "restval") for i, iid in enumerate(val_ids)})
    for imgid, (iid, sp) in enumerate(sorted(split_of.items())):
        folder = "train2014" if iid in per_split["train"] else "val2014"
        caps = _captions(S.coco_scene(seed, iid), rng)
        sents = [{"tokens": _tokens(c), "raw": c, "imgid": imgid, "sentid": sentid + j} for j, c in enumerate(caps)]
        images.append({"filepath": folder, "sentids": [s["sentid"] for s in sents],
                       "filename": _coco_file(2014, folder[:-4], iid), "imgid": imgid, "split": sp,
                       "sentences": sents, "cocoid": iid})
        sentid += len(sents)
    _write_json(root / "coco" / "dataset_coco.json", {"images": images, "dataset": "coco"})
    _write_blip_karpathy(root, images)


def _write_blip_karpathy(root: Path, karpathy: list[dict]) -> None:
    """BLIP's ``coco_caption/coco_karpathy_{train,val,test}.json`` (+ ``_gt``) from the same split (ADEM-VL).

    Train is one entry per caption and takes restval, as in BLIP; val/test one entry per image.
    """
    d = root / "coco" / "coco_caption"
    train = [{"caption": s["raw"], "image": f"{im['filepath']}/{im['filename']}", "image_id": f"coco_{im['cocoid']}"}
             for im in karpathy if im["split"] in ("train", "restval") for s in im["sentences"]]
    _write_json(d / "coco_karpathy_train.json", train)
    for split in ("val", "test"):
        ims = [im for im in karpathy if im["split"] == split]
        _write_json(d / f"coco_karpathy_{split}.json",
                    [{"image": f"{im['filepath']}/{im['filename']}", "caption": [s["raw"] for s in im["sentences"]]}
                     for im in ims])
        _write_json(d / f"coco_karpathy_{split}_gt.json", {
            "annotations": [{"image_id": im["cocoid"], "caption": s["raw"], "id": s["sentid"]}
                            for im in ims for s in im["sentences"]],
            "images": [{"id": im["cocoid"]} for im in ims]})


# --------------------------------------------------------------------------- ScienceQA

_LECTURE = "Shapes can be described by their color and by the number of their sides. A circle has no corners."


def _sqa_image_problem(scene: Scene, rng: random.Random) -> dict:
    """A multiple-choice question about the picture (colour, count or shape), answer = index of the truth."""
    kind = rng.choice(["colour", "count", "shape"])
    if kind == "colour" and _unique(scene, "shape"):
        s = rng.choice(_unique(scene, "shape"))
        right, wrong = s.colour, [c for c in sorted(S.COLOURS) if c != s.colour]
        q, sol = f"Which color is the {s.shape} in the picture?", f"The {s.shape} is {s.colour}."
    elif kind == "shape" and _unique(scene, "colour"):
        s = rng.choice(_unique(scene, "colour"))
        right, wrong = s.shape, [x for x in S.SHAPES if x != s.shape]
        q, sol = f"What shape is the {s.colour} object?", f"The {s.colour} object is a {s.shape}."
    else:
        shape = rng.choice(sorted({s.shape for s in scene}))
        c = S.count(scene, shape)
        right, wrong = str(c), [str(x) for x in range(1, 5) if x != c]
        q, sol = f"How many {shape}s are in the picture?", f"Count the {shape}s: there are {c}."
    choices = [right] + rng.sample(wrong, min(len(wrong), rng.choice([1, 2, 3])))
    rng.shuffle(choices)
    return {"question": q, "choices": choices, "answer": choices.index(right), "hint": "",
            "image": "image.png", "task": "closed choice", "grade": f"grade{rng.randint(1, 12)}",
            "subject": "natural science", "topic": "physics", "category": "Shapes and colors",
            "skill": "Identify shapes and colors", "lecture": _LECTURE, "solution": sol}


_SQA_TEXT = [
    {"question": "Which of these shapes has three sides?", "choices": ["circle", "triangle", "square"], "answer": 1,
     "hint": "A triangle is a shape with three straight sides.", "subject": "natural science", "topic": "physics",
     "category": "Shapes and colors", "skill": "Identify shapes", "solution": "A triangle has three sides."},
    {"question": "Which word would you find on a dictionary page with the guide words circle - square?",
     "choices": ["red", "triangle"], "answer": 0, "hint": "", "subject": "language science",
     "topic": "reference-skills", "category": "Reference skills", "skill": "Use guide words",
     "solution": "Put the words in alphabetical order. Since red is between the guide words circle - square, it would be found on that page."},
    {"question": "Which is a need rather than a want?", "choices": ["a red toy square", "water"], "answer": 1,
     "hint": "Needs are things people must have to live; wants are things they would like to have.",
     "subject": "social science", "topic": "economics", "category": "Basic economic principles",
     "skill": "Identify needs and wants", "solution": "Water is a need. A red toy square is a want."},
]


def _make_scienceqa(root: Path, seed: int, n: int | None) -> None:
    """``root/scienceqa/{problems,pid_splits,captions}.json`` + ``images/{split}/{pid}/image.png``."""
    n_train, n_val = _sizes(n)
    rng = random.Random(f"scienceqa-{seed}")
    d = root / "scienceqa"
    problems: dict[str, dict] = {}
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    captions: dict[str, str] = {}
    pid = 0
    for split, k in (("train", n_train), ("val", n_val), ("test", n_val)):
        for i in range(k):
            pid += 1
            p = str(pid)
            if i % 4 == 3:  # a quarter text-only, like ScienceQA's no-image problems
                prob = dict(_SQA_TEXT[(i // 4) % len(_SQA_TEXT)], image=None, task="closed choice",
                            grade=f"grade{rng.randint(1, 12)}", lecture=_LECTURE)
            else:
                scene = S.random_scene(rng)
                prob = _sqa_image_problem(scene, rng)
                S.save(scene, d / "images" / split / p / "image.png")
                captions[p] = f"{S.caption(scene)} on a white background"
            prob["split"] = split
            problems[p] = {k2: prob[k2] for k2 in ("question", "choices", "answer", "hint", "image", "task", "grade",
                                                     "subject", "topic", "category", "skill", "lecture", "solution",
                                                     "split")}
            splits[split].append(p)
    splits["trainval"] = splits["train"] + splits["val"]
    for s in ("train", "val", "test"):
        splits[f"mini{s}"] = splits[s][: max(1, len(splits[s]) // 2)]
    _write_lavin(root, seed, n_train)
    _write_json(d / "problems.json", problems)
    _write_json(d / "pid_splits.json", splits)
    _write_json(d / "captions.json", {"model": "nlpconnect/vit-gpt2-image-captioning", "captions": captions})


def _write_lavin(root: Path, seed: int, k: int) -> None:
    """LaVIN's ``all_data.json`` beside problems.json (ADEM-VL's data root): single-turn LLaVA items over
    COCO train2014 images (written under ``coco/mscoco2014/train2014``) plus Alpaca-style text-only ones."""
    rng = random.Random(f"lavin-{seed}")
    items = []
    for i, iid in enumerate(_coco_ids("train2014", k, seed)):
        if i % 4 == 3:
            items.append({"qid": f"alpaca_{i}", "instruction": "Instruction: Name a shape with three sides.\nResponse:",
                          "answer": "A triangle.", "image": None, "image_source": None, "options": None})
            continue
        scene = S.coco_scene(seed, iid)
        _save_coco_images(root, 2014, "train", [iid], seed)
        s = rng.choice(scene)
        items.append({"qid": f"{iid}_{i}", "instruction": f"Instruction: What color is the {s.shape} in the image?"
                      "\nResponse:" if s in _unique(scene, "shape") else
                      "Instruction: Describe the image briefly.\nResponse:",
                      "answer": f"The {s.shape} is {s.colour}." if s in _unique(scene, "shape")
                      else f"The image shows {S.caption(scene)}.",
                      "image": f"{iid:012d}.jpg", "image_source": "mscoco", "options": None})
    _write_json(root / "scienceqa" / "all_data.json", {"all": items})


# --------------------------------------------------------------------------- LLaVA

_PRETRAIN_PROMPTS = ["Render a clear and concise summary of the photo.\n<image>",
                     "<image>\nWrite a terse but informative summary of the picture.",
                     "Give a brief description of the image.\n<image>",
                     "<image>\nShare a concise interpretation of the image provided."]


def _make_llava(root: Path, seed: int, n: int | None) -> None:
    """``root/llava/{blip_laion_cc_sbu_558k.json, llava_v1_5_mix665k.json, images/…}`` (n items each)."""
    n_train, _ = _sizes(n)
    rng = random.Random(f"llava-{seed}")
    d = root / "llava"
    pretrain = []
    for i in range(n_train):
        pid = f"{rng.randint(0, 999_999_999):09d}"
        scene = S.random_scene(rng)
        image = f"{pid[:5]}/{pid}.jpg"
        S.save(scene, d / "images" / image)
        pretrain.append({"id": pid, "image": image, "conversations": [
            {"from": "human", "value": _PRETRAIN_PROMPTS[i % len(_PRETRAIN_PROMPTS)]},
            {"from": "gpt", "value": S.caption(scene)}]})
    instruct = []
    for i in range(n_train):
        if i % 8 == 7:  # text-only ShareGPT-style items sit between image items in mix665k
            instruct.append({"id": f"sharegpt_{i:04d}_0", "model": "", "conversations": [
                {"from": "human", "value": "How many sides does a triangle have?"},
                {"from": "gpt", "value": "A triangle has three sides."},
                {"from": "human", "value": "And a square?"},
                {"from": "gpt", "value": "A square has four sides of equal length."}]})
            continue
        iid = rng.randint(1, 581_929)
        scene = S.random_scene(rng)
        image = f"coco/train2017/{iid:012d}.jpg"
        S.save(scene, d / "images" / image)
        turns = [("<image>\nWhat is in the image?",
                  f"The image shows {S.caption(scene)} on a white background.")]
        for s in _unique(scene, "shape"):
            turns.append((f"What color is the {s.shape}?\nAnswer the question using a single word or phrase.",
                          s.colour.capitalize()))
        shape = rng.choice(sorted({s.shape for s in scene}))
        c = S.count(scene, shape)
        turns.append((f"How many {shape}s are there?", f"There {'is' if c == 1 else 'are'} {S.NUMBER_WORDS[c]} "
                                                         f"{shape}{'' if c == 1 else 's'} in the image."))
        conv = []
        for q, a in turns:
            conv += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
        instruct.append({"id": f"{iid:012d}", "image": image, "conversations": conv})
    _write_json(d / "blip_laion_cc_sbu_558k.json", pretrain)
    _write_json(d / "llava_v1_5_mix665k.json", instruct)


# --------------------------------------------------------------------------- LCL: ImageNet + ISEKAI


def _concepts() -> list[tuple[str, str]]:
    """The 12 shape+colour concepts, ``(colour, shape)``, in class-id order."""
    return [(c, s) for s in S.SHAPES for c in sorted(S.COLOURS)]


def _one_shape_scene(colour: str, shape: str, rng: random.Random) -> Scene:
    return (Shape(shape, colour, rng.randrange(4)),)


def _make_imagenet(root: Path, seed: int, n: int | None) -> None:
    """``root/imagenet/`` CLS-LOC layout + ``map_clsloc.txt``, ``LOC_val_solution.csv``,
    ``train900_pairs.jsonl`` (8 of 12 classes) and ``test100_pairs.jsonl`` (the other 4).

    ``n`` images per class (default 8): ``n - 2`` under ``train/<wnid>/`` and 2 pooled val images.
    """
    from .prepare import build_test100

    per_class = 8 if n is None else max(4, int(n))
    rng = random.Random(f"imagenet-{seed}")
    d = root / "imagenet"
    concepts = _concepts()
    classes = [(f"n9{k + 1:07d}", str(k + 1), f"{c}_{s}") for k, (c, s) in enumerate(concepts)]
    _write_text(d / "map_clsloc.txt", "".join(f"{w} {i} {name}\n" for w, i, name in classes))
    images: dict[str, list[str]] = {}
    val_rows, val_no = [], 0
    for (wnid, cid, _), (colour, shape) in zip(classes, concepts, strict=True):
        rels = []
        for j in range(per_class - 2):
            rel = f"train/{wnid}/{wnid}_{j + 1}.JPEG"
            S.save(_one_shape_scene(colour, shape, rng), d / rel)
            rels.append(rel)
        for _ in range(2):
            val_no += 1
            name = f"ILSVRC2012_val_{val_no:08d}"
            S.save(_one_shape_scene(colour, shape, rng), d / "val" / f"{name}.JPEG")
            rels.append(f"val/{name}.JPEG")
            val_rows.append(f"{name},{wnid} 1 1 63 63 \n")
        images[cid] = rels
    _write_text(d / "LOC_val_solution.csv", "ImageId,PredictionString\n" + "".join(val_rows))
    test_ids = set(rng.sample([c[1] for c in classes], 4))
    train = [c for c in classes if c[1] not in test_ids]
    rows = []
    for _wnid, cid, name in train:
        me = concepts[int(cid) - 1]

        def sim(other: tuple[str, str, str], me: tuple[str, str] = me) -> tuple[int, int]:
            o = concepts[int(other[1]) - 1]
            return (-(2 * (o[1] == me[1]) + (o[0] == me[0])), int(other[1]))

        neighbors = sorted((c for c in train if c[1] != cid), key=sim)
        rows.append({"class_id": cid, "class_name": name.replace("_", " "), "samples": images[cid],
                     "neighbors": [[c[1], c[2].replace("_", " "), images[c[1]][0]] for c in neighbors]})
    _write_jsonl(d / "train900_pairs.jsonl", rows)
    _write_jsonl(d / "test100_pairs.jsonl", build_test100(d, context=per_class // 2, seed=seed))


#: ISEKAI-like groups: (made-up novel concept, its picture) vs (real look-alike, its picture)
ISEKAI_GROUPS = [
    ("zorbex", ("red", "triangle"), "red square", ("red", "square")),
    ("glimmorb", ("yellow", "circle"), "yellow square", ("yellow", "square")),
    ("cactisq", ("green", "square"), "green circle", ("green", "circle")),
    ("blufin", ("blue", "triangle"), "blue circle", ("blue", "circle")),
]


def _make_isekai(root: Path, seed: int, n: int | None) -> None:
    """``root/isekai/{ISEKAI-10.json, ISEKAI-pair.json}`` (JSON Lines) + ``<concept>/{pos,neg,infer}_NN.png``.

    ``n`` images per concept (default 6): ``n - 2`` support images and 2 query images.
    """
    per = 6 if n is None else max(3, int(n))
    rng = random.Random(f"isekai-{seed}")
    d = root / "isekai"
    support: dict[str, list[str]] = {}
    infer: dict[str, list[str]] = {}
    for novel, npic, real, rpic in ISEKAI_GROUPS:
        for name, pic, prefix in ((novel, npic, "pos"), (real, rpic, "neg")):
            folder = name.replace(" ", "_")
            support[name] = [f"{folder}/{prefix}_{j + 1:02d}.png" for j in range(per - 2)]
            infer[name] = [f"{folder}/infer_{j + 1:02d}.png" for j in range(2)]
            for rel in support[name] + infer[name]:
                S.save(_one_shape_scene(*pic, rng), d / rel)

    def line(query: str, q_img: str, other: str) -> dict:
        return {"image_name": q_img, "positive_list": support[query], "negative_list": support[other],
                "positive_promt": query, "negative_promt": other, "label_name": query}

    ten = []
    for novel, _, real, _ in ISEKAI_GROUPS:
        for j in range(2):
            ten += [line(novel, infer[novel][j], real), line(real, infer[real][j], novel)]
    pair = []
    novels = [g[0] for g in ISEKAI_GROUPS]
    for a in range(len(novels)):
        for b in range(a + 1, len(novels)):
            for j in range(2):
                pair += [line(novels[a], infer[novels[a]][j], novels[b]),
                         line(novels[b], infer[novels[b]][j], novels[a])]
    _write_jsonl(d / "ISEKAI-10.json", ten)
    _write_jsonl(d / "ISEKAI-pair.json", pair)


# --------------------------------------------------------------------------- MME

_MME_YN_LAYOUT = ("artwork", "celebrity", "landmark", "posters", "scene")
_MME_PNG = ("code_reasoning", "numerical_calculation", "text_translation")


def _mme_pair(task: str, scene: Scene, rng: random.Random) -> list[tuple[str, str]]:
    """A yes question and a no question about one picture (MME always pairs them)."""
    suffix = " Please answer yes or no."
    s = rng.choice(scene)
    if task == "count":
        n = len(scene)
        wrong = rng.choice([x for x in range(1, 5) if x != n])
        return [(f"Are there {S.NUMBER_WORDS[n]} shapes in the image?{suffix}", "Yes"),
                (f"Are there {S.NUMBER_WORDS[wrong]} shapes in the image?{suffix}", "No")]
    if task == "color":
        other = rng.choice([c for c in sorted(S.COLOURS) if c != s.colour])
        return [(f"Is there a {s.colour} {s.shape} in the image?{suffix}", "Yes"),
                (f"Is there a {other} {s.shape} in the image?{suffix}", "No")
                if (other, s.shape) not in {(x.colour, x.shape) for x in scene}
                else (f"Is the image black and white?{suffix}", "No")]
    if task == "position":
        side = "left" if s.cell % 2 == 0 else "right"
        wrong = "right" if side == "left" else "left"
        return [(f"Is the {S.phrase(s)} on the {side} side of the image?{suffix}", "Yes"),
                (f"Is the {S.phrase(s)} on the {wrong} side of the image?{suffix}", "No")]
    present = {(x.colour, x.shape) for x in scene}
    c_, sh_ = rng.choice([(c, sh) for c in sorted(S.COLOURS) for sh in S.SHAPES if (c, sh) not in present])
    return [(f"Is there a {s.colour} {s.shape} in the image?{suffix}", "Yes"),
            (f"Is there a {c_} {sh_} in the image?{suffix}", "No")]


def _make_mme(root: Path, seed: int, n: int | None) -> None:
    """``root/mme/MME_Benchmark_release_version/<14 subtasks>/`` in both official layouts; ``n`` images per subtask."""
    from .mme import RELEASE_DIR, SUBTASKS, YN_DIR

    per = 2 if n is None else max(1, int(n))
    rng = random.Random(f"mme-{seed}")
    base = root / "mme" / RELEASE_DIR
    for task in SUBTASKS:
        ext = ".png" if task in _MME_PNG else ".jpg"
        for j in range(per):
            scene = S.random_scene(rng)
            stem = f"{task[:4]}_{j + 1:04d}"
            if task in _MME_YN_LAYOUT:
                img, txt = base / task / "images" / f"{stem}{ext}", base / task / YN_DIR / f"{stem}.txt"
            else:
                img, txt = base / task / f"{stem}{ext}", base / task / f"{stem}.txt"
            S.save(scene, img)
            _write_text(txt, "".join(f"{q}\t{a}\n" for q, a in _mme_pair(task, scene, rng)))


# --------------------------------------------------------------------------- entry point

_WRITERS: dict[str, Callable[[Path, int, int | None], None]] = {
    "vqav2": _make_vqav2,
    "okvqa": _make_okvqa,
    "coco2014": lambda r, s, n: _make_coco(r, 2014, s, n),
    "coco2017": lambda r, s, n: _make_coco(r, 2017, s, n),
    "scienceqa": _make_scienceqa,
    "llava": _make_llava,
    "imagenet": _make_imagenet,
    "isekai": _make_isekai,
    "mme": _make_mme,
}


def make_mini(dataset: str, root: str | Path, *, seed: int = 0, n: int | None = None) -> Path:
    """Write the mini ``dataset`` (or ``"all"``) under the data root ``root``; return ``root``.

    Afterwards ``VLREPRO_DATA=root`` (or each reader's ``root=``) finds it with the normal readers.
    """
    root = Path(root)
    names = MINI_DATASETS if dataset == "all" else (dataset,)
    for name in names:
        if name not in _WRITERS:
            from ..errors import VlreproError
            raise VlreproError(f"unknown dataset {name!r} for make-mini",
                               fix=f"choose one of {', '.join(MINI_DATASETS)} or all")
        _WRITERS[name](root, int(seed), n)
    return root
