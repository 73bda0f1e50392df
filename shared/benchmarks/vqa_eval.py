"""Benchmark: ``vlrepro eval vqa`` on a synthetic full-size VQAv2 val split.

Builds 214,354 questions (the size of VQAv2 val) in the official file formats in a temporary
directory: questions ``{"questions": [...]}``, annotations ``{"annotations": [...]}`` with ten
answers each, results ``[{"question_id", "answer"}]``. Answer strings are VQA-like (yes/no,
counts, short phrases, some with punctuation, number words, articles, contractions), and the
annotators agree or disagree at realistic rates, so every branch of the metric runs.

Times (1) ``vqa_accuracy`` on the loaded lists, in a fresh process (cold normalisation caches),
and (2) the command line end to end, ``python -m vlrepro.shared.cli eval vqa ...``, in a
subprocess: interpreter start, imports, JSON loading, scoring, printing. Prints one JSON line:
``{"questions", "seconds" (CLI end to end), "questions_per_second", "function_seconds",
"overall"}``. Target: under 10 s on one core.

    python shared/benchmarks/vqa_eval.py [--n 214354] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VQAV2_VAL_QUESTIONS = 214_354

QUESTION_TYPES = {
    "yes/no": ["is the", "are the", "is this", "does the", "is there a", "are there", "is it", "can you", "do you", "was"],
    "number": ["how many", "how many people are", "what number is", "how many people are in"],
    "other": ["what is the", "what color is the", "what", "what is", "where is the", "what kind of", "what type of",
              "what is the man", "what are the", "which", "who is", "what sport is", "why", "what room is"],
}
COLORS = ["red", "blue", "green", "white", "black", "yellow", "brown", "gray", "orange", "pink", "purple", "silver"]
NOUNS = ["dog", "cat", "man", "woman", "table", "kitchen", "frisbee", "pizza", "tennis", "baseball", "skateboard",
         "umbrella", "train", "bus", "horse", "giraffe", "zebra", "elephant", "surfboard", "kite", "bench", "clock",
         "laptop", "phone", "bed", "couch", "grass", "snow", "water", "sky", "tree", "building", "street", "beach"]
ODD = ["t-shirt", "black/white", "st. patrick's", "i don't know", "n/a", "3:30", "10.5", "1,000", "mr. smith",
       "left side", "on table", "coca-cola", "red and white", "playing tennis", "can't tell", "2:00", "sandwich!"]
NUMBER_WORDS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "10": "ten"}


def _answer_pool(rng: random.Random, atype: str) -> list[str]:
    if atype == "yes/no":
        return ["yes", "no"]
    if atype == "number":
        return [str(rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 20])) for _ in range(3)]
    pool = []
    for _ in range(3):
        r = rng.random()
        if r < 0.3:
            pool.append(rng.choice(COLORS))
        elif r < 0.5:
            pool.append(f"{rng.choice(COLORS)} {rng.choice(NOUNS)}")
        elif r < 0.6:
            pool.append(rng.choice(ODD))
        else:
            pool.append(rng.choice(NOUNS))
    return pool


def _prediction(rng: random.Random, answers: list[str]) -> str:
    """A model-like answer: often the majority answer, sometimes dressed up, sometimes wrong."""
    r = rng.random()
    top = max(set(answers), key=answers.count)
    if r < 0.45:
        return top
    if r < 0.55:
        return top.capitalize() + "."
    if r < 0.62:
        return NUMBER_WORDS.get(top, f"a {top}")
    if r < 0.68:
        return f"the {top}\n"
    if r < 0.72:
        return top.replace("'", "")  # "dont know" style
    return rng.choice(answers + NOUNS + COLORS + ["yes", "no", "2"])


def build(directory: Path, n: int, seed: int) -> dict[str, Path]:
    rng = random.Random(seed)
    questions, annotations, results = [], [], []
    weights = [("yes/no", 0.38), ("number", 0.12), ("other", 0.50)]
    for i in range(n):
        qid = 262148000 + i
        atype = rng.choices([w[0] for w in weights], [w[1] for w in weights])[0]
        qtype = rng.choice(QUESTION_TYPES[atype])
        pool = _answer_pool(rng, atype)
        if rng.random() < 0.35:
            answers = [pool[0]] * 10  # unanimous annotators
        else:
            answers = rng.choices(pool, [6, 3, 1][: len(pool)], k=10)
        image_id = 393225 + i // 5
        questions.append({"image_id": image_id, "question": f"{qtype} {rng.choice(NOUNS)}?", "question_id": qid})
        annotations.append({
            "question_type": qtype, "multiple_choice_answer": max(set(answers), key=answers.count),
            "answers": [{"answer": a, "answer_confidence": rng.choice(["yes", "maybe", "no"]), "answer_id": j + 1}
                        for j, a in enumerate(answers)],
            "image_id": image_id, "answer_type": atype, "question_id": qid,
        })
        results.append({"question_id": qid, "answer": _prediction(rng, answers)})
    info = {"description": "synthetic VQAv2-sized benchmark data", "version": "2.0"}
    paths = {"questions": directory / "v2_OpenEnded_mscoco_val2014_questions.json",
             "annotations": directory / "v2_mscoco_val2014_annotations.json",
             "results": directory / "results.json"}
    paths["questions"].write_text(json.dumps({"info": info, "task_type": "Open-Ended", "data_type": "mscoco",
                                              "data_subtype": "val2014", "questions": questions}))
    paths["annotations"].write_text(json.dumps({"info": info, "data_type": "mscoco", "data_subtype": "val2014",
                                                "annotations": annotations}))
    paths["results"].write_text(json.dumps(results))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=VQAV2_VAL_QUESTIONS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from vlrepro.shared.metrics.vqa import load_vqa_files, vqa_accuracy

    with tempfile.TemporaryDirectory(prefix="vlrepro-vqa-bench-") as tmp:
        paths = build(Path(tmp), args.n, args.seed)
        annotations, results, questions = load_vqa_files(str(paths["annotations"]), str(paths["results"]), str(paths["questions"]))
        t0 = time.perf_counter()
        scores = vqa_accuracy(annotations, results, questions)
        function_seconds = time.perf_counter() - t0
        del annotations, results, questions

        cmd = [sys.executable, "-m", "vlrepro.shared.cli", "eval", "vqa", "--questions", str(paths["questions"]),
               "--annotations", str(paths["annotations"]), "--results", str(paths["results"])]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        cli_seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"vlrepro eval vqa failed: {proc.stderr.strip()}")
        if json.loads(proc.stdout) != scores:
            sys.exit("the CLI and the function disagree")
    print(json.dumps({
        "questions": args.n,
        "seconds": round(cli_seconds, 3),
        "questions_per_second": round(args.n / cli_seconds),
        "function_seconds": round(function_seconds, 3),
        "overall": scores["overall"],
    }))


if __name__ == "__main__":
    main()
