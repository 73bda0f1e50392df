"""Beam search (spec §1a) with scripted scorers: which prompts are scored, what is stored, and the
global top-b by the last step's score only (not the running sum)."""

from __future__ import annotations

import pytest
import torch
from vlrepro.leverlm.method import InfoScorer, beam_search, insert_candidate


def test_hand_worked_example_uses_last_step_scores_only():
    # step 1 from [0]:   10: .5  11: .4  12: .1            -> beams [10,0] (.5), [11,0] (.4)
    # step 2 from [10,0]: 11: .05 12: .3  -> [12,10,0] .3, [11,10,0] .05
    #        from [11,0]: 10: .2  12: .35 -> [12,11,0] .35, [10,11,0] .2
    # global top-2 by last score: [12,11,0] .35, [12,10,0] .3 (by running sum [12,10,0]=.8 would lead)
    table = {(0,): {10: .5, 11: .4, 12: .1}, (10, 0): {11: .05, 12: .3}, (11, 0): {10: .2, 12: .35}}
    calls = []

    def score_fn(seq, cands, order):
        calls.append((tuple(seq), tuple(cands), order))
        return [table[tuple(seq)][c] for c in cands]

    res = beam_search(0, [10, 11, 12], score_fn, beam_size=2, few_shot_num=2, construct_order="left")
    assert res.id_list == [[12, 11, 0], [12, 10, 0]]
    assert res.score_list == [.35, .3]
    # a beam never re-scores its own ICDs
    assert calls == [((0,), (10, 11, 12), "left"), ((10, 0), (11, 12), "left"), ((11, 0), (10, 12), "left")]
    assert res.to_json() == {"id_list": [[12, 11, 0], [12, 10, 0]], "score_list": [.35, .3]}


class RecordingScorer(InfoScorer):
    """InfoScorer whose P(y | S, x) is a fixed position-weighted sum, recording every scored prompt."""

    def __init__(self, value):
        self.value, self.batch_size, self.prompts = value, 4, []

    def probability(self, sequences):
        self.prompts += [tuple(s) for s in sequences]
        return torch.tensor([sum(self.value[i] * (p + 1) for p, i in enumerate(s)) / 100 for s in sequences], dtype=torch.float64)


VALUE = {0: 0.0, 1: 1.0, 2: 3.0, 3: 2.0, 4: 0.5}


def test_insert_candidate():
    assert insert_candidate([7, 8, 0], 5, "left") == [5, 7, 8, 0]
    assert insert_candidate([7, 8, 0], 5, "right") == [7, 8, 5, 0]
    with pytest.raises(ValueError):
        insert_candidate([0], 5, "middle")


def test_left_order_prompt_equals_stored_order():
    sc = RecordingScorer(VALUE)
    res = beam_search(0, [1, 2, 3, 4], sc, beam_size=1, few_shot_num=2, construct_order="left")
    # step 1: InfoScore(c) = value[c]*1/100 -> 2 (3.0); step 2 from [2,0]: c leftmost, [c,2,0]: value[c]/100 + 2*3/100 - 3/100
    assert res.id_list == [[3, 2, 0]]
    assert (3, 2, 0) in sc.prompts and (2, 3, 0) not in sc.prompts
    assert res.score_list == pytest.approx([(2.0 + 2 * 3.0) / 100 - 3.0 / 100])


def test_right_order_two_shots_stores_the_prompt_reversed():
    sc = RecordingScorer(VALUE)
    res = beam_search(0, [1, 2, 3, 4], sc, beam_size=1, few_shot_num=2, construct_order="right")
    # step 2 from [2,0]: prompt [2, c, 0] -> InfoScore = 2*value[c]/100 -> c = 3, stored by prepending [3, 2, 0]
    assert (2, 3, 0) in sc.prompts and (3, 2, 0) not in sc.prompts
    assert res.id_list == [[3, 2, 0]]
    assert res.score_list == pytest.approx([(3.0 + 2 * 2.0) / 100 - 3.0 / 100])
    prompt = beam_search(0, [1, 2, 3, 4], RecordingScorer(VALUE), beam_size=1, few_shot_num=2, construct_order="right",
                         right_store="prompt_order")
    assert prompt.id_list == [[2, 3, 0]]


def test_right_order_three_shots_reproduces_the_original_quirk():
    """Spec addendum: the prompt scored at step 3 is [c2, c1, c3, q] but [c3, c2, c1, q] is stored."""
    sc = RecordingScorer(VALUE)
    res = beam_search(0, [1, 2, 3, 4], sc, beam_size=1, few_shot_num=3, construct_order="right")
    c3, c2, c1, q = res.id_list[0]
    assert (c1, c2, q) == (2, 3, 0)
    assert (c2, c1, c3, q) in sc.prompts and (c1, c2, c3, q) not in sc.prompts
    fixed = RecordingScorer(VALUE)
    res2 = beam_search(0, [1, 2, 3, 4], fixed, beam_size=1, few_shot_num=3, construct_order="right", right_store="prompt_order")
    assert tuple(res2.id_list[0]) in fixed.prompts and res2.id_list[0][:2] == [2, 3]


@pytest.mark.parametrize("order", ["left", "right"])
def test_sequences_have_no_repeats_and_come_from_the_candidates(order):
    sc = RecordingScorer({i: (i * 37 % 11) / 3 for i in range(40)})
    cands = [5, 9, 13, 17, 21, 25]
    res = beam_search(30, cands, sc, beam_size=3, few_shot_num=3, construct_order=order)
    assert len(res.id_list) == 3 and len({tuple(s) for s in res.id_list}) == 3
    for s in res.id_list:
        assert len(s) == 4 and s[-1] == 30 and len(set(s[:-1])) == 3 and set(s[:-1]) <= set(cands)
    assert all(len(set(p[:-1])) == len(p) - 1 for p in sc.prompts)
