"""scorer=cider: CIDEr against pycocoevalcap on a corpus, and CIDEr(with c) − CIDEr(without c)."""

from __future__ import annotations

import pytest
from vlrepro.leverlm.cider_scorer import Cider, CiderScorer
from vlrepro.leverlm.prompts import style_for


def test_cider_matches_pycocoevalcap_when_df_comes_from_the_scored_corpus():
    from pycocoevalcap.cider.cider import Cider as Ref

    gts = {1: ["a red square on white", "red square"], 2: ["a blue circle", "blue round circle"], 3: ["green star", "a green star shape"]}
    res = {1: ["a red square"], 2: ["a circle"], 3: ["blue star"]}
    _, per_image = Ref().compute_score(gts, res)
    ours = Cider(list(gts.values()))
    assert [ours.score(res[k][0], gts[k]) for k in gts] == pytest.approx(list(per_image), abs=1e-9)


class FakeLVLM:
    """Captions the query with the first caption of the leftmost ICD (so the prompt decides the output)."""

    family = "flamingo"

    def __init__(self, rows):
        self.rows, self.prompts = rows, []

    def generate(self, texts, images, **_):
        self.prompts += texts
        out = []
        for t in texts:
            first = t.split("Output:")[1].split("<|endofchunk|>")[0] if t.count("<image>") > 1 else "nothing here"
            out.append(first)
        return out


def test_cider_scorer_rewards_the_candidate_that_fixes_the_caption():
    rows = [{"idx": i, "image": f"img{i}", "single_caption": c, "captions": [c, c + " shape"]}
            for i, c in enumerate(["a red square", "a blue circle", "a green star", "a red square"])]
    sc = CiderScorer(FakeLVLM(rows), style_for("flamingo", "caption", bos_token="<s>", eos_token="</s>"), rows, batch_size=2)
    got = sc([0], [1, 2, 3], "left")  # candidate 3 has the query's caption -> largest gain; the others gain 0
    assert got[2] > 0 and got[0] == pytest.approx(0.0) and got[1] == pytest.approx(0.0)
    assert len(sc.lvlm.prompts) == 4 and sc.lvlm.prompts[0] == "<image>Output:"
