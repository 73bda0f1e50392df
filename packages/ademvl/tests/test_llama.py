"""The Meta-format LLaMA: parity with transformers, shard merge, loading, KV cache."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from vlrepro.ademvl.llama import (
    ModelArgs,
    Tokenizer,
    Transformer,
    hf_to_meta_state_dict,
    load_llama,
    load_meta_state_dict,
    merge_shards,
    save_meta_checkpoint,
    shard_split_dim,
    split_into_shards,
)
from vlrepro.shared import testing
from vlrepro.shared.errors import VlreproError


def _hf_and_ours(seed: int = 0):
    torch.manual_seed(seed)
    cfg = testing.tiny_llama_config(320, hidden_size=64, intermediate_size=192, rms_norm_eps=1e-6)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    args = ModelArgs(dim=64, n_layers=2, n_heads=4, multiple_of=32, vocab_size=320, norm_eps=1e-6, max_seq_len=64)
    ours = Transformer(args).eval()
    ours.load_state_dict(hf_to_meta_state_dict(hf.state_dict(), n_heads=4))
    return hf, ours


def test_ffn_width_matches_llama_sizes():
    assert ModelArgs(dim=4096).ffn_hidden == 11008
    assert ModelArgs(dim=5120, n_heads=40, n_layers=40).ffn_hidden == 13824
    assert ModelArgs(dim=64, multiple_of=32).ffn_hidden == 192


def test_parity_with_transformers_llama():
    """Same weights (HF names mapped, q/k un-permuted): identical logits, so RoPE/RMSNorm/SwiGLU match."""
    hf, ours = _hf_and_ours()
    ids = torch.randint(0, 320, (2, 23), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(ids).logits
        got = ours(ids)
    assert got.shape == ref.shape == (2, 23, 320)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-5)


def test_parity_fails_without_unpermute():
    """The q/k un-permutation matters: loading HF q/k rows as they are changes the logits."""
    hf, ours = _hf_and_ours()
    sd = hf_to_meta_state_dict(hf.state_dict(), n_heads=4)
    for i in range(2):
        sd[f"layers.{i}.attention.wq.weight"] = hf.state_dict()[f"model.layers.{i}.self_attn.q_proj.weight"]
        sd[f"layers.{i}.attention.wk.weight"] = hf.state_dict()[f"model.layers.{i}.self_attn.k_proj.weight"]
    ours.load_state_dict(sd)
    ids = torch.arange(12).view(1, 12)
    with torch.no_grad():
        assert (ours(ids) - hf(ids).logits).abs().max() > 1e-3


def test_kv_cache_matches_full_forward():
    _, ours = _hf_and_ours()
    ids = torch.randint(0, 320, (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = ours(ids)
        ours.setup_cache(2, 10)
        first = ours(ids[:, :6], 0)
        steps = [ours(ids[:, t : t + 1], t) for t in range(6, 10)]
        ours.clear_cache()
    torch.testing.assert_close(first, full[:, :6], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 6:], atol=1e-5, rtol=1e-5)


def test_split_dims_follow_meta_model_parallel_layout():
    assert shard_split_dim("tok_embeddings.weight") == 1
    assert shard_split_dim("output.weight") == 0
    assert shard_split_dim("layers.3.attention.wq.weight") == 0
    assert shard_split_dim("layers.3.feed_forward.w3.weight") == 0
    assert shard_split_dim("layers.3.attention.wo.weight") == 1
    assert shard_split_dim("layers.3.feed_forward.w2.weight") == 1
    assert shard_split_dim("layers.3.ffn_norm.weight") is None
    assert shard_split_dim("norm.weight") is None


def test_shard_split_then_merge_round_trip():
    _, ours = _hf_and_ours()
    state = ours.state_dict()
    shards = split_into_shards(state, 2)
    # the shards really are halves: wq rows, wo columns, embeddings columns
    assert shards[0]["layers.0.attention.wq.weight"].shape == (32, 64)
    assert shards[1]["layers.0.attention.wo.weight"].shape == (64, 32)
    assert shards[0]["tok_embeddings.weight"].shape == (320, 32)
    assert torch.equal(shards[1]["norm.weight"], state["norm.weight"])
    shards[0]["rope.freqs"] = torch.zeros(8)  # present in some Meta releases; dropped on merge
    merged = merge_shards(shards)
    assert set(merged) == set(state)
    for k in state:
        assert torch.equal(merged[k], state[k]), k


def test_13b_style_two_shard_files_load_like_one(tmp_path):
    """params.json + consolidated.00/01.pth written, read with weights_only, merged: same logits."""
    _, ours = _hf_and_ours()
    (tmp_path / "tokenizer.model").write_bytes(testing.sentencepiece_model())
    save_meta_checkpoint(ours, tmp_path / "13B", n_shards=2)
    save_meta_checkpoint(ours, tmp_path / "7B", n_shards=1)
    assert sorted(p.name for p in (tmp_path / "13B").iterdir()) == ["consolidated.00.pth", "consolidated.01.pth", "params.json"]
    params = json.loads((tmp_path / "13B" / "params.json").read_text())
    assert params == {"dim": 64, "multiple_of": 32, "n_heads": 4, "n_layers": 2, "norm_eps": 1e-6, "vocab_size": -1}
    merged = load_meta_state_dict(tmp_path / "13B")
    for k, v in ours.state_dict().items():
        assert torch.equal(merged[k], v)
    m13, tok = load_llama(tmp_path, "13B", max_seq_len=64)
    m7, _ = load_llama(tmp_path, "7B", max_seq_len=64)
    ids = torch.arange(1, 15).view(1, 14)
    with torch.no_grad():
        assert torch.equal(m13(ids), m7(ids))
        torch.testing.assert_close(m13(ids), ours(ids))
    assert tok.n_words == 320 and tok.bos_id == 1 and tok.eos_id == 2


def test_tokenizer_meta_api(tiny_weights):
    tok = Tokenizer(tiny_weights / "tokenizer.model")
    ids = tok.encode("The answer is A.", bos=True, eos=True)
    assert ids[0] == 1 and ids[-1] == 2
    assert tok.decode(ids[1:-1]) == "The answer is A."


def test_missing_weights_are_one_line_errors(tmp_path):
    with pytest.raises(VlreproError, match="tokenizer not found"):
        load_llama(tmp_path, "7B")
    (tmp_path / "tokenizer.model").write_bytes(testing.sentencepiece_model())
    with pytest.raises(VlreproError, match="params.json not found"):
        load_llama(tmp_path, "7B")
    (tmp_path / "7B").mkdir()
    (tmp_path / "7B" / "params.json").write_text('{"dim": 64, "n_heads": 4, "n_layers": 2}')
    with pytest.raises(VlreproError, match="no consolidated"):
        load_llama(tmp_path, "7B")
    (tmp_path / "7B" / "consolidated.00.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(VlreproError, match="cannot read LLaMA shard"):
        load_llama(tmp_path, "7B")


def test_weights_only_refuses_pickled_code(tmp_path):
    """A shard holding arbitrary pickled objects is refused, not executed."""
    (tmp_path / "tokenizer.model").write_bytes(testing.sentencepiece_model())
    (tmp_path / "7B").mkdir()
    (tmp_path / "7B" / "params.json").write_text('{"dim": 64, "n_heads": 4, "n_layers": 2}')
    torch.save({"x": print}, tmp_path / "7B" / "consolidated.00.pth")  # a global weights_only must not unpickle
    with pytest.raises(VlreproError, match="cannot read LLaMA shard"):
        load_llama(tmp_path, "7B")
