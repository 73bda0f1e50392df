"""Tokenised episodes: per-round BOS, image blocks, and only the final answer supervised."""

from __future__ import annotations

import random

from vlrepro.lcl.method import (
    Round,
    check_image_blocks,
    encode_rounds,
    expand_image_tokens,
    render_round,
    sequence_text,
    two_way_episode,
)
from vlrepro.lcl.model import IGNORE_INDEX, IM_END, IM_PATCH, IM_START


def _golden_episode(golden, key):
    inp = golden["inputs"][key]
    rounds = [Round(s["image"], s["question"], s["answer"], template=s["conv_template"]) for s in inp["support"]]
    q = inp["query"]
    return rounds + [Round(q["image"], q["question"], q["answer"], template="final_v1.0")]


def test_only_final_answer_is_supervised(golden, tiny):
    model, tok, _ = tiny
    L = model.config.image_token_len
    for key in ("train_2way_shot1", "train_2way_shot2"):
        rounds = _golden_episode(golden, key)
        enc = encode_rounds(rounds, tok, L, train=True)
        sup = [t for t, lab in zip(enc.input_ids, enc.labels, strict=False) if lab != IGNORE_INDEX]
        assert sup == [lab for lab in enc.labels if lab != IGNORE_INDEX]  # labels equal the ids where supervised
        exp = golden["expected"][key]
        expected = exp["supervised_text"][0]  # ' there is "zorbex" in the image.</s>'
        # the golden span is the tail of the assembled sequence: nothing after the final answer
        (start, end), = exp["supervised_spans"]
        seq = sequence_text(rounds, with_final_answer=True)
        assert seq[start:end] == expected and end == len(seq)
        # same characters (SentencePiece decoders differ on whether a leading "▁" decodes to a space) ...
        assert tok.decode(sup).lstrip() == expected.lstrip()
        # ... and, as in the golden span, the space after "ASSISTANT:" belongs to the first answer token
        assert tok.convert_ids_to_tokens(sup[0]).startswith("\u2581")
        first = next(i for i, lab in enumerate(enc.labels) if lab != IGNORE_INDEX)
        assert tok.decode(enc.input_ids[first - 12:first]).endswith("ASSISTANT:")
        assert sup[-1] == tok.eos_token_id
        # the supervised tokens are one contiguous run at the very end
        assert all(lab != IGNORE_INDEX for lab in enc.labels[first:])
        assert len(enc.input_ids) == len(enc.labels)


def test_round_layout_bos_eos_and_image_blocks(golden, tiny):
    model, tok, _ = tiny
    L = model.config.image_token_len
    rounds = _golden_episode(golden, "train_2way_shot2")  # 4 support rounds + query
    enc = encode_rounds(rounds, tok, L, train=True)
    ids = enc.input_ids
    assert ids.count(tok.bos_token_id) == 5  # one BOS per round
    # EOS after round 1 and after the answer only: middle rounds drop theirs
    assert ids.count(tok.eos_token_id) == 2
    image_ids = {name: tok.convert_tokens_to_ids(name) for name in (IM_PATCH, IM_START, IM_END)}
    check_image_blocks(ids, 5, L, image_ids)
    assert ids.count(image_ids[IM_PATCH]) == 5 * L


def test_eval_encoding_has_no_labels_and_ends_at_assistant(golden, tiny):
    model, tok, _ = tiny
    rounds = _golden_episode(golden, "eval_isekai_shot1")
    enc = encode_rounds(rounds, tok, model.config.image_token_len, train=False)
    assert set(enc.labels) == {IGNORE_INDEX}
    # the prompt stops right after "ASSISTANT:" (how many tokens that is depends on the tokenizer)
    assert tok.decode(enc.input_ids).endswith("? ASSISTANT:")
    assert enc.input_ids[-1] != tok.eos_token_id and tok.convert_ids_to_tokens(enc.input_ids[-1]).endswith(":")
    # and it equals the final round's prompt tokenised on its own (its own BOS included)
    q = rounds[-1]
    alone = tok(render_round(q.template, expand_image_tokens(q.question, model.config.image_token_len), None)).input_ids
    assert enc.input_ids[-len(alone):] == alone and alone[0] == tok.bos_token_id
    assert enc.target_text == golden["expected"]["eval_isekai_shot1"]["eval_target_text"]


def test_episode_with_permutation_rejects_non_permutation():
    import pytest

    with pytest.raises(ValueError):
        two_way_episode([("a", "x")], [("b", "y")], ("c", "x"), "q <image>?", random.Random(0), permutation=[0, 0])
