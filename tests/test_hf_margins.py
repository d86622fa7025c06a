"""Margins of Hugging Face models: equal to probattn's GPT on copied GPT-2 weights, and the
rotary closed form against autograd Jacobians of the map built from the model's own modules."""

import sys

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the Hugging Face integration is the 'hf' extra")

from probattn.integrations.hf import use_probattn_attention  # noqa: E402
from probattn.integrations.hf.margins import capture_attention, hf_margins  # noqa: E402
from probattn.model import GPT, GPTConfig  # noqa: E402
from probattn.studies.support_tokens import gpt_margins  # noqa: E402
from probattn.studies.support_tokens.attention_map import causal_softmax  # noqa: E402

from .hf_models import ids, tiny_gpt2, tiny_llama, tiny_mistral  # noqa: E402


def gpt_from_hf_gpt2(hf) -> GPT:
    """probattn's GPT holding an HF GPT-2's weights (Conv1D stores them transposed)."""
    c = hf.config
    gpt = GPT(GPTConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer, n_head=c.n_head,
                        n_embd=c.n_embd, bias=True)).eval()
    src = hf.transformer
    with torch.no_grad():
        gpt.wte.weight.copy_(src.wte.weight)
        gpt.wpe.weight.copy_(src.wpe.weight)
        for mine, theirs in zip(gpt.blocks, src.h):
            for a, b in ((mine.ln_1, theirs.ln_1), (mine.ln_2, theirs.ln_2)):
                a.weight.copy_(b.weight)
                a.bias.copy_(b.bias)
            for a, b in ((mine.attn.c_attn, theirs.attn.c_attn), (mine.attn.c_proj, theirs.attn.c_proj),
                         (mine.mlp.c_fc, theirs.mlp.c_fc), (mine.mlp.c_proj, theirs.mlp.c_proj)):
                a.weight.copy_(b.weight.T)
                a.bias.copy_(b.bias)
        gpt.ln_f.weight.copy_(src.ln_f.weight)
        gpt.ln_f.bias.copy_(src.ln_f.bias)
    return gpt


def test_hf_gpt2_margins_equal_probattn_gpt_margins_on_the_same_weights():
    hf = tiny_gpt2(activation_function="gelu", layer_norm_epsilon=1e-5)
    gpt = gpt_from_hf_gpt2(hf)
    tokens = ids(2, 16)
    torch.testing.assert_close(gpt(tokens)[0], hf(tokens).logits, rtol=1e-5, atol=1e-5)  # the same model
    theirs, ours = hf_margins(hf, tokens, reference=True), gpt_margins(gpt, tokens)
    assert theirs.logabs.shape == ours.logabs.shape == (2, 2, 4, 16)  # (L, B, H, T)
    torch.testing.assert_close(theirs.logabs, ours.logabs, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(theirs.sign, ours.sign)
    torch.testing.assert_close(theirs.token_margins(), ours.token_margins())


def _autograd_logdets(module, record):
    """log|det de^h_t/du_t| by autograd, the map built from the module's own q/k projections and rotary."""
    apply = sys.modules[type(module).__module__].apply_rotary_pos_emb
    u0 = record["hidden"][0].double()  # (T, d)
    cos, sin = (t.double() for t in record["rotary"])
    T, p, H = u0.shape[0], module.head_dim, module.config.num_attention_heads
    groups = H // module.config.num_key_value_heads
    proj = {name: getattr(module, name).double() for name in ("q_proj", "k_proj")}

    def heads_map(u):  # (T, d) -> (H, T, d): e^h = u - sum_{s<t} a^h_ts u_s
        q = proj["q_proj"](u).view(1, T, H, p).transpose(1, 2)
        k = proj["k_proj"](u).view(1, T, -1, p).transpose(1, 2)
        q, k = apply(q, k, cos, sin)
        k = k.repeat_interleave(groups, dim=1)
        a = causal_softmax(q[0] @ k[0].transpose(-1, -2) * module.scaling, "strict")
        return u[None] - a @ u[None]

    jac = torch.autograd.functional.jacobian(heads_map, u0)  # (H, T, d, T, d)
    blocks = torch.stack([jac[:, t, :, t, :] for t in range(T)], dim=1)  # (H, T, d, d)
    for name, m in proj.items():
        setattr(module, name, m.float())
    return torch.linalg.slogdet(blocks)


@pytest.mark.parametrize("build", [tiny_llama, tiny_mistral])
def test_rotary_grouped_head_margins_equal_autograd_jacobians(build):
    model = build(num_hidden_layers=2, hidden_size=16, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=32)
    with torch.no_grad():  # sharper attention than at initialisation, so the rotation matters
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(4.0)
    tokens = ids(1, 10, seed=3)
    lm = hf_margins(model, tokens, reference=True)  # the closed form in float64 (the fast path: tested below)
    with capture_attention(model) as modules:
        model(tokens, use_cache=False)
        expected = [_autograd_logdets(m, m._probattn_record) for m in modules]
    for layer, (sign, logabs) in enumerate(expected):
        torch.testing.assert_close(lm.logabs[layer, 0], logabs, rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(lm.sign[layer, 0], sign)
    # not the rotation-free formula: dropping R_t changes the margins of a rotary model
    from probattn.integrations.hf.margins import layer_logdets

    with capture_attention(model) as modules:
        model(tokens, use_cache=False)
        rec = modules[0]._probattn_record
        _, plain = layer_logdets(rec["q"], rec["k"], modules[0].scaling, None)
    assert (plain[0, :, 2:] - lm.logabs[0, 0, :, 2:]).abs().max() > 1e-3


def test_margins_leave_the_model_as_it_was():
    model = use_probattn_attention(tiny_llama(), "gpam", {"init": "random"})
    tokens = ids(1, 8)
    before = model(tokens).logits
    hf_margins(model, tokens)
    assert model.config._attn_implementation == "probattn"
    torch.testing.assert_close(model(tokens).logits, before, rtol=0, atol=0)


def test_text_longer_than_the_context_is_scored_in_windows():
    from probattn.errors import DataError
    from probattn.integrations.hf.margins import hf_text_margins

    from .hf_models import char_tokenizer

    model, tok = tiny_llama(), char_tokenizer()
    text = "the cat sat on the mat and the dog sat on the log."
    with pytest.raises(DataError, match="--slide"):
        hf_text_margins(model, tok, text, block=16)
    tm = hf_text_margins(model, tok, text, slide=True, block=16)
    assert tm.windows[0] == (0, 16) and tm.windows[-1][1] == len(text)
    first = hf_margins(model, torch.tensor([tok(text)["input_ids"][:16]])).token_margins()[0]
    torch.testing.assert_close(tm.margins[2:16], first[2:].to(tm.margins.dtype))
    second = hf_margins(model, torch.tensor([tok(text)["input_ids"][8:24]])).token_margins()[0]
    torch.testing.assert_close(tm.margins[16:24], second[8:16].to(tm.margins.dtype))  # from the second window
    assert not torch.isnan(tm.margins[2:]).any()


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama, tiny_mistral])
def test_fast_margins_match_the_float64_reference(build):
    model = build(num_hidden_layers=2) if build is not tiny_gpt2 else build()
    with torch.no_grad():  # sharper attention than at initialisation
        for p in model.parameters():
            p.mul_(3.0) if p.dim() == 2 else None
    tokens = ids(2, 24, seed=5)
    fast, ref = hf_margins(model, tokens), hf_margins(model, tokens, reference=True)
    assert fast.logabs.dtype == torch.float64
    torch.testing.assert_close(fast.sign, ref.sign)
    # float32 moments: the log-determinants agree to float32 accuracy, not float64's
    torch.testing.assert_close(fast.logabs, ref.logabs, rtol=1e-4, atol=1e-4)
    assert (fast.logabs - ref.logabs).abs().max() > 0  # it is the fast path that was compared


def test_fast_logdets_are_the_same_in_chunks_of_heads_and_with_a_per_sequence_rotation():
    from probattn.integrations.hf.margins import RotationCache, fast_layer_logdets, layer_logdets, record_rotation

    model = tiny_llama(num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, hidden_size=32)
    tokens = ids(2, 12, seed=1)
    with capture_attention(model) as modules:
        model(tokens, use_cache=False)
        m = modules[0]
        rec = m._probattn_record
        rotation = RotationCache()(m, rec)
        whole = fast_layer_logdets(rec["q"], rec["k"], m.scaling, rotation)
        one_head = fast_layer_logdets(rec["q"], rec["k"], m.scaling, rotation, chunk_bytes=1)
        ref = layer_logdets(rec["q"], rec["k"], m.scaling, record_rotation(m, rec))
        # the rotation given per sequence (B, T, p, p) instead of shared (1, T, p, p)
        from probattn.integrations.hf.margins import Rotation

        per_seq = Rotation(rotation.matrices.expand(2, -1, -1, -1).clone())
        batched = fast_layer_logdets(rec["q"], rec["k"], m.scaling, per_seq)
    for a in (whole, one_head, batched):
        torch.testing.assert_close(a[0], ref[0])
        torch.testing.assert_close(a[1], ref[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(one_head[1], whole[1], rtol=1e-5, atol=1e-5)


def test_the_barrier_s_cheaper_matrix_has_the_same_determinant_and_gradient():
    from probattn.integrations.hf.margins import RotationCache, layer_small_matrices

    model = tiny_llama(num_hidden_layers=1)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(4.0)
    tokens = ids(3, 14, seed=2)
    with capture_attention(model, detach=False) as modules:
        model(tokens, use_cache=False)
        m = modules[0]
        rec = m._probattn_record
        rotation = RotationCache()(m, rec)
        q, k = rec["q"].double().detach().requires_grad_(), rec["k"].double().detach()
        rows, positions = torch.tensor([2, 0]), torch.tensor([[3, 9, 13], [2, 5, 7]])
        for where in ((None, None), (rows, positions)):
            plain = layer_small_matrices(q, k, m.scaling, rotation.matrices, *where)
            cheap = layer_small_matrices(q, k, m.scaling, rotation.matrices, *where, rot_inv=rotation.inverse,
                                         same_det=True)
            assert (plain - cheap).abs().max() > 1e-3  # a different matrix ...
            torch.testing.assert_close(torch.linalg.det(cheap), torch.linalg.det(plain))  # ... the same det J_t
            g_plain, = torch.autograd.grad(torch.linalg.det(plain).sum(), q)
            g_cheap, = torch.autograd.grad(torch.linalg.det(cheap).sum(), q)
            torch.testing.assert_close(g_cheap, g_plain)
