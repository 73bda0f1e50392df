"""Forward hooks on a tiny Llama: identities, tuple/tensor outputs, and that hooks never leak."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from vlrepro.shared.hooks import add_to_outputs, capture_outputs, count_hooks, edit_outputs
from vlrepro.shared.testing import tiny_llama_config


@pytest.fixture(scope="module")
def llama():
    import transformers

    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(tiny_llama_config(vocab_size=64)).eval()


IDS = torch.tensor([[1, 5, 9, 12, 7]])
LAYERS = ["model.layers.0", "model.layers.1"]


def test_zero_delta_leaves_logits_unchanged(llama):
    base = llama(IDS).logits
    with add_to_outputs(llama, {n: torch.zeros(32) for n in LAYERS}):
        hooked = llama(IDS).logits
    assert torch.equal(base, hooked)
    assert count_hooks(llama) == 0


def test_delta_changes_logits_and_is_removed(llama):
    base = llama(IDS).logits
    with add_to_outputs(llama, {"model.layers.1": torch.full((32,), 0.5)}):
        hooked = llama(IDS).logits
    assert not torch.allclose(base, hooked)
    assert torch.equal(llama(IDS).logits, base)


def test_added_delta_equals_captured_plus_delta(llama):
    delta = torch.randn(32)
    with capture_outputs(llama, ["model.layers.0"]) as plain:
        llama(IDS)
    seen = {}
    with edit_outputs(llama, ["model.layers.0"], lambda n, h: h + delta):
        with capture_outputs(llama, ["model.layers.0"]) as after:  # registered second: sees the edit
            llama(IDS)
        seen.update(after)
    torch.testing.assert_close(seen["model.layers.0"], plain["model.layers.0"] + delta)


def test_hooks_removed_on_exception_and_bad_name(llama):
    with pytest.raises(RuntimeError):
        with add_to_outputs(llama, {"model.layers.0": torch.ones(32)}):
            raise RuntimeError("boom")
    assert count_hooks(llama) == 0
    with pytest.raises(KeyError, match="no submodule 'model.layers.9'"):
        with add_to_outputs(llama, {"model.layers.9": torch.ones(32)}):
            pass
    assert count_hooks(llama) == 0


def test_tensor_output_module():
    lin = nn.Sequential(nn.Linear(3, 3, bias=False))
    nn.init.eye_(lin[0].weight)
    x = torch.ones(1, 3)
    with edit_outputs(lin, ["0"], lambda n, h: h * 0):  # replace, not add
        assert torch.equal(lin(x), torch.zeros(1, 3))
    assert torch.equal(lin(x), x)
