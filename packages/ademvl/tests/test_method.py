"""ADEM-VL's method: multiscale pooling, the drop, the fusion, identity at init, trainables, generation."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from vlrepro.ademvl.method import (
    MultiscaleSampler,
    adaptive_drop,
    count_trainable,
    parameter_free_cross_attention,
    trainable_parameter_count,
)


# ----------------------------------------------------------------------------- Eq. (2)
def test_multiscale_sampler_pools_each_scale():
    x = torch.randn(2, 16, 3)  # a 4x4 grid
    out = MultiscaleSampler([16, 4])(x)
    assert out.shape == (2, 20, 3)
    assert torch.equal(out[:, :16], x)  # pooling 4x4 to 4x4 is the identity
    grid = x.view(2, 4, 4, 3)
    for k, (r, c) in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)]):  # row-major 2x2 blocks
        torch.testing.assert_close(out[:, 16 + k], grid[:, r : r + 2, c : c + 2].mean(dim=(1, 2)))


def test_multiscale_sampler_single_scale_and_errors():
    assert MultiscaleSampler([4])(torch.randn(1, 16, 2)).shape == (1, 4, 2)  # the original crashes on one value
    with pytest.raises(ValueError, match="perfect squares"):
        MultiscaleSampler([15])
    with pytest.raises(ValueError, match="grid"):
        MultiscaleSampler([64])(torch.randn(1, 16, 2))


# ----------------------------------------------------------------------------- Eq. (5)
def test_drop_keeps_exactly_the_expected_entries():
    """N=10, γ=0.3: k = 3, τ = sorted[3]; entries < τ zeroed, ties at τ kept, negatives handled."""
    scores = torch.tensor([[
        [0.5, -0.2, 0.1, 0.9, -0.27, 0.3, 0.0, 0.7, 0.2, 0.4],  # sorted: -.27 -.2 0 .1 ... -> τ=0.1: drop 3
        [1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],  # τ = 1.0 (tied): nothing below it, nothing dropped
        [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0],  # τ = 3.0: drops 2, 1, 0
    ]])
    out = adaptive_drop(scores, 0.3)
    keep = torch.tensor([[
        [1, 0, 1, 1, 0, 1, 0, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    ]], dtype=torch.bool)
    assert torch.equal(out, torch.where(keep, scores, torch.zeros(())))


def test_drop_index_is_computed_in_floating_point():
    """γ=0.29, N=100 gives int(28.999…) = 28 dropped entries, not 29 (checked against the original)."""
    row = torch.randperm(100).float().view(1, 1, 100) + 1.0  # distinct, all positive
    out = adaptive_drop(row, 0.29)
    assert int((out == 0).sum()) == 28
    assert torch.equal(out[out > 0].sort().values, (torch.arange(29, 101)).float())


def test_drop_removes_row_minima_and_zero_ratio_is_identity():
    s = torch.randn(2, 5, 20, generator=torch.Generator().manual_seed(0))
    out = adaptive_drop(s, 0.1)  # k = 2
    assert torch.equal((out == 0).sum(-1), torch.full((2, 5), 2))
    lowest = s.topk(2, dim=-1, largest=False).indices
    assert torch.all(out.gather(-1, lowest) == 0)
    assert adaptive_drop(s, 0.0) is s


# ----------------------------------------------------------------------------- Eq. (4)
def test_fusion_matches_reference_formula():
    g = torch.Generator().manual_seed(0)
    z, v, e1, e2 = (torch.randn(2, 7, 8, generator=g), torch.randn(2, 5, 8, generator=g),
                    torch.randn(1, 5, 8, generator=g), torch.randn(1, 5, 8, generator=g))
    ref = F.silu(z) @ F.silu(v + e1).transpose(1, 2) @ (v + e2)
    got = parameter_free_cross_attention(z, F.silu(v + e1), v + e2, drop_ratio=0.0)
    torch.testing.assert_close(got, ref)
    a = F.silu(z) @ F.silu(v + e1).transpose(1, 2)
    torch.testing.assert_close(parameter_free_cross_attention(z, F.silu(v + e1), v + e2, 0.2),
                               adaptive_drop(a, 0.2) @ (v + e2))


# ----------------------------------------------------------------------------- identity at init
def _batch(model, texts, with_image, seed=0, pad=4):
    tok = model.tokenizer
    ids = [tok.encode(t, bos=True, eos=True) for t in texts]
    n = max(len(i) for i in ids) + pad
    ex = torch.zeros(len(ids), n, dtype=torch.long)
    for r, i in enumerate(ids):
        ex[r, : len(i)] = torch.tensor(i)
    labels = ex.clone()
    labels[:, :3] = 0
    images = torch.randn(len(ids), 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return ex, labels, images, torch.tensor(with_image)


def test_text_only_output_equals_plain_llama(make_model, plain_llama):
    """No image → V = 0 and E₂ = 0 at init → the fusion adds exactly 0: logits equal bare LLaMA's on "Image: N/A" + text."""
    model = make_model().eval()
    ex, labels, images, ind = _batch(model, ["what shape is red", "the answer is"], [0, 0])
    with torch.no_grad():
        logits, lab = model.logits(ex, labels, images, ind)
        tok = model.tokenizer
        for r in range(2):
            seq = [ex[r, 0].item()] + model.prefix_nonimg + ex[r, 1:].tolist()
            plain = plain_llama(torch.tensor(seq[: logits.shape[1]]).view(1, -1))
            assert torch.equal(logits[r], plain[0])
    assert tok.decode(model.prefix_nonimg) == "Image: N/A"


def test_image_layout_identity_when_visual_memory_is_zero(make_model, plain_llama):
    """β = 0 zeroes V; then the model is plain LLaMA on [BOS, "Image: ", cls, text] embeddings."""
    model = make_model(beta=0.0).eval()
    ex, labels, images, ind = _batch(model, ["how many circles", "a blue square"], [1, 1])
    with torch.no_grad():
        logits, _ = model.logits(ex, labels, images, ind)
        _, cls = model.encode_images(images, ind)
        emb = plain_llama.tok_embeddings
        for r in range(2):
            parts = [emb(ex[r, :1]), emb(torch.tensor(model.prefix_img)), cls[r], emb(ex[r, 1:])]
            h = torch.cat(parts)[: logits.shape[1]].unsqueeze(0)
            assert torch.equal(logits[r], plain_llama.forward_embeds(h)[0])


def test_image_fusion_is_active_at_default_init(make_model, plain_llama):
    """With an image and β = 0.01, V ≠ 0 so the output differs from the plain model (the test above can fail)."""
    model = make_model().eval()
    ex, labels, images, ind = _batch(model, ["how many circles"], [1])
    with torch.no_grad():
        logits, _ = model.logits(ex, labels, images, ind)
        _, cls = model.encode_images(images, ind)
        emb = plain_llama.tok_embeddings
        h = torch.cat([emb(ex[0, :1]), emb(torch.tensor(model.prefix_img)), cls[0], emb(ex[0, 1:])])[: logits.shape[1]]
        assert (logits[0] - plain_llama.forward_embeds(h.unsqueeze(0))[0]).abs().max() > 0


def test_zero_init_clip_adapters_give_frozen_clip_features(make_model, tiny_weights):
    """Penultimate block + post-LN on every token, no projection; adapters (fc2 = 0) change nothing."""
    from transformers import CLIPVisionModel

    model = make_model().eval()
    ref = CLIPVisionModel.from_pretrained(tiny_weights / "clip").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        hs = ref(pixel_values=x, output_hidden_states=True).hidden_states[-2]
        expected = ref.vision_model.post_layernorm(hs)
        assert torch.equal(model.clip(x), expected)
        assert model.clip(x).shape == (2, 17, 32)


# ----------------------------------------------------------------------------- trainables (§1.6)
def test_trainable_names_and_count(make_model):
    model = make_model()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("adapter" in n for n in names)
    assert all(not p.requires_grad for n, p in model.named_parameters() if "adapter" not in n)
    assert sorted({n.split(".")[0] for n in names}) == ["adapter_emb1", "adapter_emb2", "adapter_proj", "adapter_proj_cls", "clip"]
    # 2·20·64 + 2·(32·8 + 8 + 8·64 + 64) + 3·2·32·4 = 2560 + 1680 + 768
    assert count_trainable(model) == 5008 == trainable_parameter_count(
        llm_dim=64, num_visual_tokens=20, clip_width=32, clip_layers=3, hidden_proj=8, adapter_dim=4)
    assert count_trainable(make_model(no_cls=True)) == 5008 - 840


def test_trainable_formula_gives_the_paper_numbers():
    assert trainable_parameter_count(llm_dim=4096) == 4_530_432
    assert trainable_parameter_count(llm_dim=5120) == 5_449_984


def test_real_7b_architecture_on_meta_device_has_paper_count():
    """LLaMA-7B + CLIP ViT-L/14 (24 blocks) built on the meta device: 4,530,432 trainables."""
    from transformers import CLIPVisionConfig, CLIPVisionModel
    from vlrepro.ademvl.llama import ModelArgs, Transformer
    from vlrepro.ademvl.method import ADEMVL, AdemConfig

    class _Tok:
        bos_id, eos_id = 1, 2

        def encode(self, s, bos, eos):
            return [5] * len(s)

    with torch.device("meta"):
        llama = Transformer(ModelArgs(dim=4096, n_layers=32, n_heads=32, vocab_size=32000))
        vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                                  num_attention_heads=16, image_size=224, patch_size=14)).vision_model
        model = ADEMVL(llama, vision, _Tok(), AdemConfig(adapter_dim=12))
    assert count_trainable(model) == 4_530_432


def test_optimizer_step_changes_only_adapters_and_last_clip_adapter_gets_no_grad(make_model):
    model = make_model(drop_ratio=0.1).train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    ex, labels, images, ind = _batch(model, ["how many circles", "the answer is"], [1, 0])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(ex, labels, images, ind)
    loss.backward()
    last = model.clip.vision_model.encoder.layers[-1].mlp.adapter
    assert last.fc1.weight.grad is None and last.fc2.weight.grad is None
    assert model.clip.vision_model.encoder.layers[0].mlp.adapter.fc2.weight.grad.abs().sum() > 0
    opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    changed = [n for n, p in model.named_parameters() if n in trained and not torch.equal(p, trained[n])]
    assert "adapter_emb1" in changed and "adapter_emb2" in changed and "adapter_proj.fc1.weight" in changed


# ----------------------------------------------------------------------------- loss and layout (§1.4)
def test_loss_counts_only_answer_tokens_hand_computed(make_model):
    model = make_model().eval()
    ex, labels, images, ind = _batch(model, ["red square"], [0], pad=20)  # room for the inserted prefix
    with torch.no_grad():
        loss = model(ex, labels, images, ind)
        logits, lab = model.logits(ex, labels, images, ind)
    # prompt (first 3 positions), the inserted "Image: N/A" and padding carry label 0
    assert torch.equal(lab[0, 1 : 1 + len(model.prefix_nonimg)], torch.zeros(len(model.prefix_nonimg), dtype=torch.long))
    terms = [-torch.log_softmax(logits[0, t - 1], -1)[lab[0, t]] for t in range(1, lab.shape[1]) if lab[0, t] > 0]
    assert len(terms) == int((labels[0] > 0).sum())
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    assert lab.shape[1] == int((lab[0] > 0).nonzero().max()) + 1  # trimmed to the last labelled position
    # as the original, the inserted prefix pushes the tail out when the padding is too short
    ex, labels, images, ind = _batch(model, ["red square"], [0], pad=4)
    with torch.no_grad():
        _, lab = model.logits(ex, labels, images, ind)
    assert int((lab > 0).sum()) == ex.shape[1] - len(model.prefix_nonimg) - 3  # 3 = BOS + 2 prompt positions


def test_overfitting_one_batch_halves_the_loss(make_model):
    """Spec §9.6: ~30 AdamW steps on one tiny batch (42 answer tokens, image and text-only rows) halve the loss.

    Only the adapters train, through a frozen random LLaMA whose LM head can express confident
    predictions (``init_tiny_llama``); with a 0.02-std head the loss cannot fall below ~4.5.
    """
    torch.manual_seed(0)
    model = make_model().train()
    ex, labels, images, ind = _batch(model, ["how many circles are there", "what shape is red"], [1, 0])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2, betas=(0.9, 0.95))
    first = None
    for _ in range(30):
        loss = model(ex, labels, images, ind)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


# ----------------------------------------------------------------------------- generation and checkpoints
def test_generate_with_cache_and_left_padding_matches_recomputation(make_model):
    model = make_model().eval()
    with torch.no_grad():  # make E2 and the adapters non-trivial so the fusion matters
        model.adapter_emb2.normal_(0, 1.0)
    prompts = ["Question: how many circles", "a"]
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ind = torch.tensor([1, 0])
    cached = model.generate(prompts, images, ind, max_gen_len=6)
    full = model.generate(prompts, images, ind, max_gen_len=6, use_cache=False)
    assert cached == full
    assert len(cached) == 2


def test_prompt_layout_of_generation(make_model):
    model = make_model()
    tok = model.tokenizer
    body = tok.encode("Hi", bos=False, eos=False)
    assert model.prompt_tokens("Hi", True) == [1] + tok.encode("Image: ", False, False) + [0] + body
    assert model.prompt_tokens("Hi", False) == [1] + tok.encode("Image: N/A", False, False) + body
    assert make_model(no_cls=True).prompt_tokens("Hi", True) == [1] + body


def test_adapter_state_round_trip_reproduces_logits(make_model, tmp_path):
    from safetensors.torch import load_file, save_file

    a = make_model(seed=1).eval()
    with torch.no_grad():
        for p in a.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    save_file({k: v.contiguous() for k, v in a.adapter_state_dict().items()}, tmp_path / "a.safetensors")
    b = make_model(seed=2).eval()
    ex, labels, images, ind = _batch(a, ["how many circles"], [1])
    with torch.no_grad():
        assert not torch.equal(a.logits(ex, labels, images, ind)[0], b.logits(ex, labels, images, ind)[0])
        b.load_adapter_state_dict({f"module.{k}": v for k, v in load_file(tmp_path / "a.safetensors").items()})
        assert torch.equal(a.logits(ex, labels, images, ind)[0], b.logits(ex, labels, images, ind)[0])


def test_original_checkpoint_names_translate(make_model):
    from vlrepro.ademvl.method import translate_original_checkpoint

    model = make_model()
    ours = model.adapter_state_dict()
    original = {}
    for k, v in ours.items():
        if k.startswith("clip."):
            i, fc = k.split(".")[4], k.split(".")[-2]
            original[f"module.backbone.visual.transformer.resblocks.{i}.adapter_mlp.{fc}.weight"] = v
        else:
            original[f"module.{k}"] = v
    assert set(translate_original_checkpoint(original)) == set(ours)
    copy.deepcopy(model).load_adapter_state_dict(original)
