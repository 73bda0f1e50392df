"""InfoScore (spec §1a, Eq. 1/2) on tiny OpenFlamingo and IDEFICS against a by-hand computation.

The hand version writes the prompt strings out literally, runs ONE unpadded row through the
model, and averages log p over the label tokens (everything after the mask context, minus pad
tokens), so it checks the prompt assembly, the label mask, the pad==eos exclusion, right padding
and chunking of the batched scorer all at once.
"""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from vlrepro.leverlm.method import InfoScorer, beam_search

FL_IMG, FL_EOC = "<image>", "<|endofchunk|>"
ID_IMG = "<fake_token_around_image><image><fake_token_around_image>"


VQA_INSTR = "Instruction: provide an answer to the question. Use the image to answer.\n"


def _texts(family, rows):
    """(full scoring text, mask context) for the prompt [rows[:-1] ICDs…, rows[-1] query], written by hand."""
    if "question" in rows[-1]:  # VQA: "Question:{q} Short answer:{a}", IDEFICS with the instruction
        qa = [f"Question:{r['question']} Short answer:{r['answer']}" for r in rows]
        if family == "flamingo":
            ctx = "".join(f"{FL_IMG}{t}{FL_EOC}" for t in qa[:-1]) + f"{FL_IMG}Question:{rows[-1]['question']} Short answer:"
            return ctx + f"{rows[-1]['answer']}{FL_EOC}</s>", ctx
        ctx = "<s>" + VQA_INSTR + "".join(f"{ID_IMG}{t}\n" for t in qa[:-1]) + f"{ID_IMG}Question:{rows[-1]['question']} Short answer:"
        return ctx + f"{rows[-1]['answer']}\n</s>", ctx
    if family == "flamingo":
        ctx = "".join(f"{FL_IMG}Output:{r['single_caption']}{FL_EOC}" for r in rows[:-1]) + f"{FL_IMG}Output:"
        return ctx + f"{rows[-1]['single_caption']}{FL_EOC}</s>", ctx
    ctx = "<s>" + "".join(f"{ID_IMG}Caption:{r['single_caption']}\n" for r in rows[:-1]) + f"{ID_IMG}Caption:"
    return ctx + f"{rows[-1]['single_caption']}\n</s>", ctx


def hand_probability(lvlm, rows) -> tuple[float, int]:
    """P_M(y | S, x) = exp(mean over label tokens of log p(y_t | ·)) for one prompt; also |y|."""
    full, ctx = _texts(lvlm.family, rows)
    tok = lvlm.tokenizer
    ids = torch.tensor([tok(full, add_special_tokens=False).input_ids])  # [1, T]
    n_ctx = len(tok(ctx, add_special_tokens=False).input_ids)
    pils = [Image.open(r["image"]).convert("RGB") for r in rows]
    attn = torch.ones_like(ids)
    with torch.no_grad():
        if lvlm.family == "flamingo":
            vx = torch.stack([lvlm.image_processor(p) for p in pils])[None, :, None]  # [1, N, 1, 3, H, W]
            logits = lvlm.model(vision_x=vx, lang_x=ids, attention_mask=attn).logits
        else:
            pix = lvlm.image_processor.preprocess(pils)[None]  # [1, N, 3, H, W]
            latest = torch.cumsum(ids == tok.convert_tokens_to_ids("<image>"), dim=1) - 1  # [1, T]
            iam = torch.nn.functional.one_hot(latest.clamp(min=0), len(rows)) * (latest >= 0).unsqueeze(-1)
            logits = lvlm.model(input_ids=ids, attention_mask=attn, pixel_values=pix, image_attention_mask=iam).logits
    logp = torch.log_softmax(logits[0].float(), -1)
    terms = [logp[t - 1, ids[0, t]].item() for t in range(n_ctx, ids.shape[1]) if ids[0, t] != tok.pad_token_id]
    return math.exp(sum(terms) / len(terms)), len(terms)


@pytest.mark.parametrize("family", ["flamingo", "idefics"])
def test_label_token_count_follows_the_pad_rule(lvlms, train_rows, family):
    """Flamingo's pad == eos, so its EOS is not a label token; IDEFICS' EOS is."""
    lvlm = lvlms[family]
    q = train_rows[5]
    _, n = hand_probability(lvlm, [train_rows[1], q])
    body = q["single_caption"] + (FL_EOC if family == "flamingo" else "\n")
    full, ctx = _texts(family, [train_rows[1], q])
    n_body = len(lvlm.tokenizer(full, add_special_tokens=False).input_ids) - len(lvlm.tokenizer(ctx, add_special_tokens=False).input_ids) - 1
    assert n == n_body + (0 if family == "flamingo" else 1)
    assert len(lvlm.tokenizer(body, add_special_tokens=False).input_ids) >= 2


@pytest.mark.parametrize("family", ["flamingo", "idefics"])
def test_infoscore_equals_its_definition(lvlms, train_rows, family):
    lvlm = lvlms[family]
    scorer = InfoScorer(lvlm, lvlm.style("caption"), train_rows, batch_size=2)  # chunks of 2, rows of unequal length
    q, c1, c2, c3 = 5, 1, 9, 20
    R = train_rows
    # first step: S = [] ; InfoScore(c | x) = P(y | c, x) - P(y | x)
    base = hand_probability(lvlm, [R[q]])[0]
    got = scorer([q], [c1, c2, c3], "left")
    want = [hand_probability(lvlm, [R[c], R[q]])[0] - base for c in (c1, c2, c3)]
    assert got == pytest.approx(want, abs=2e-6)
    assert all(-1 < v < 1 for v in got) and len(set(round(v, 6) for v in got)) == 3
    # second step from the beam [c1, q]: left puts c leftmost, right puts it next to the query
    base2 = hand_probability(lvlm, [R[c1], R[q]])[0]
    left = scorer([c1, q], [c2, c3], "left")
    right = scorer([c1, q], [c2, c3], "right")
    assert left == pytest.approx([hand_probability(lvlm, [R[c], R[c1], R[q]])[0] - base2 for c in (c2, c3)], abs=2e-6)
    assert right == pytest.approx([hand_probability(lvlm, [R[c1], R[c], R[q]])[0] - base2 for c in (c2, c3)], abs=2e-6)
    assert abs(left[0] - right[0]) > 1e-7  # the two orders really score different prompts


@pytest.mark.parametrize("order", ["left", "right"])
def test_beam_search_stores_the_scored_sequences(lvlms, train_rows, order):
    """Real InfoScore beam search: each stored sequence's score is the hand InfoScore of its last step."""
    lvlm = lvlms["flamingo"]
    R = train_rows
    scorer = InfoScorer(lvlm, lvlm.style("caption"), R, batch_size=8)
    q, cands = 3, [0, 7, 12, 21]
    res = beam_search(q, cands, scorer, beam_size=2, few_shot_num=2, construct_order=order)
    assert len(res.id_list) == 2 and sorted(res.score_list, reverse=True) == res.score_list
    for (c2, c1, qq), s in zip(res.id_list, res.score_list, strict=False):
        assert qq == q and c1 != c2 and {c1, c2} <= set(cands)
        prompt = [c2, c1, q] if order == "left" else [c1, c2, q]  # stored list is built by prepending
        want = hand_probability(lvlm, [R[i] for i in prompt])[0] - hand_probability(lvlm, [R[c1], R[q]])[0]
        assert s == pytest.approx(want, abs=2e-6)
    # one-step search picks the candidate with the largest hand InfoScore
    one = beam_search(q, cands, scorer, beam_size=1, few_shot_num=1, construct_order=order)
    base = hand_probability(lvlm, [R[q]])[0]
    hand = {c: hand_probability(lvlm, [R[c], R[q]])[0] - base for c in cands}
    assert one.id_list == [[max(hand, key=hand.get), q]]


@pytest.mark.parametrize("family", ["flamingo", "idefics"])
def test_vqa_infoscore_equals_its_definition(lvlms, train_rows, family):
    lvlm = lvlms[family]
    qs = [("what colour is the square?", "red"), ("how many shapes are there?", "two"), ("is there a circle?", "yes"),
          ("what shape is blue?", "star")]
    R = [{**train_rows[i], "question": q, "answer": a} for i, (q, a) in enumerate(qs)]
    scorer = InfoScorer(lvlm, lvlm.style("vqa"), R, batch_size=4)
    base = hand_probability(lvlm, [R[1], R[0]])[0]
    got = scorer([1, 0], [2, 3], "right")
    assert got == pytest.approx([hand_probability(lvlm, [R[1], R[c], R[0]])[0] - base for c in (2, 3)], abs=2e-6)
