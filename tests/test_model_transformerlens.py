"""TransformerLens habits on the GPT: hook names and shapes, run_with_cache / run_with_hooks with
TransformerLens's signatures, edited attention patterns that take effect (or are refused), and
nanoGPT's loss conventions (targets of -1 ignored, the loss in the model's dtype)."""

import pytest
import torch
import torch.nn.functional as F

from probattn.attention import attention_class
from probattn.model import GPT, GPTConfig
from probattn.model.hooks import ActivationCache, HookError, get_act_name
from probattn.train.objectives import token_metrics

from .mechanisms import MODEL_OPTIONS, mechanisms


def small(**kw):
    cfg = dict(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8)
    cfg.update(kw)
    torch.manual_seed(0)
    return GPT(GPTConfig(**cfg)).eval()


def test_transformerlens_cache_lines_run_unchanged():
    # TransformerLens Main Demo: logits, cache = model.run_with_cache(tokens); cache["pattern", 0]
    model, tokens = small(), torch.randint(11, (2, 7))
    (logits, _), cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("pattern"))
    assert isinstance(cache, ActivationCache)
    assert sorted(cache) == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    assert cache["pattern", 0] is cache["blocks.0.attn.hook_pattern"]
    assert cache["pattern", 1].shape == (2, 2, 7, 7)
    torch.testing.assert_close(cache["pattern", 1].sum(-1), torch.ones(2, 2, 7))
    torch.testing.assert_close(logits, model(tokens)[0])
    _, one = model.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
    assert list(one) == ["blocks.1.hook_resid_post"]
    _, plain = model.run_with_cache(tokens, names_filter=["hook_embed"], return_cache_object=False)
    assert type(plain) is dict and plain["hook_embed"].shape == (2, 7, 8)
    with pytest.raises(KeyError, match="no hook point"):
        model.run_with_cache(tokens, names_filter=["blocks.7.hook_resid_post"])


def test_get_act_name_matches_transformerlens():
    assert get_act_name("pattern", 3) == "blocks.3.attn.hook_pattern"
    assert get_act_name("q", 0) == "blocks.0.attn.hook_q"
    assert get_act_name("resid_post", 1) == "blocks.1.hook_resid_post"
    assert get_act_name("embed") == "hook_embed"
    assert get_act_name("pos_embed") == "hook_pos_embed"
    assert get_act_name("blocks.0.attn.hook_v") == "blocks.0.attn.hook_v"
    with pytest.raises(KeyError):
        get_act_name("resid_post")


def test_head_ablation_with_run_with_hooks():
    # TransformerLens Main Demo, "Hooks: Intervening on Activations":
    #   def head_ablation_hook(value, hook): value[:, :, head_index_to_ablate, :] = 0.; return value
    #   model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(utils.get_act_name("v", layer), hook)])
    model, tokens = small(), torch.randint(11, (2, 9))
    head, layer = 1, 0

    def head_ablation_hook(value, hook):
        value[:, :, head, :] = 0.0
        return value

    ablated = model.run_with_hooks(tokens, fwd_hooks=[(get_act_name("v", layer), head_ablation_hook)])[0]
    # independent computation: the head's output z is then exactly zero, so zeroing z agrees
    zero_z = lambda z, hook: z * (torch.arange(z.shape[2]) != head)[:, None]  # noqa: E731
    with model.hooks([(get_act_name("z", layer), zero_z)]):
        expected = model(tokens)[0]
    torch.testing.assert_close(ablated, expected)
    assert not torch.allclose(ablated, model(tokens)[0])
    assert not any(p.has_hooks() for p in model.hook_points.values())  # removed after the call
    filtered = model.run_with_hooks(tokens, fwd_hooks=[(lambda n: n == "blocks.0.attn.hook_v", head_ablation_hook)])[0]
    torch.testing.assert_close(filtered, ablated)


def test_backward_hooks_are_refused():
    with pytest.raises(HookError, match="backward hooks"):
        small().run_with_hooks(torch.randint(11, (1, 3)), bwd_hooks=[("hook_embed", lambda x, h: x)])


def test_pos_embed_has_transformerlens_shape_and_edits_count():
    model, tokens = small(), torch.randint(11, (3, 5))
    _, cache = model.run_with_cache(tokens, names_filter=["hook_pos_embed", "hook_embed", "hook_input"])
    assert cache["pos_embed"].shape == (3, 5, 8)  # (batch, pos, d_model)
    torch.testing.assert_close(cache["pos_embed"][1], model.wpe.weight[:5])
    torch.testing.assert_close(cache["hook_input"], cache["embed"] + cache["pos_embed"])
    no_pos = model.run_with_hooks(tokens, fwd_hooks=[("hook_pos_embed", lambda x, h: torch.zeros_like(x))])[0]
    x = model.wte(tokens)
    expected = model.forward_embeddings(x)
    torch.testing.assert_close(no_pos, expected)


def _reference_logits_with_pattern(model, tokens, layer, edit):
    """Recompute the forward by hand with layer ``layer``'s pattern replaced by ``edit(pattern)``."""
    x = model.embed(tokens)
    for i, blk in enumerate(model.blocks):
        attn = blk.attn
        h = blk.ln_1(x)
        q, k, v = (t.transpose(1, 2) for t in attn.project_qkv(h))
        y, w = attn.mechanism.reference(q, k, v)
        if i == layer:
            y = edit(w) @ v
        x = x + attn.c_proj(y.transpose(1, 2).reshape(x.shape))
        x = x + blk.mlp(blk.ln_2(x))
    return model.lm_head(model.ln_f(x))


@pytest.mark.parametrize("attention", [m for m in mechanisms() if attention_class(m).pattern_mixes_values])
def test_an_edited_pattern_changes_the_output(attention):
    options = MODEL_OPTIONS[attention]
    model = small(attention=attention, attention_options=options, n_layer=3)
    with torch.no_grad():  # scores of O(1), so that patterns are far from uniform
        for blk in model.blocks:
            blk.attn.c_attn.weight.mul_(30)
    tokens = torch.randint(11, (2, 6))
    uniform = lambda w: torch.tril(torch.ones_like(w)) / torch.arange(1, 7, dtype=w.dtype)[:, None]  # noqa: E731
    returned = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_pattern", lambda p, h: uniform(p))])[0]

    def in_place(pattern, hook):  # TransformerLens code often edits in place and returns nothing
        pattern.copy_(uniform(pattern))

    edited_in_place = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_pattern", in_place)])[0]
    expected = _reference_logits_with_pattern(model, tokens, 1, uniform)
    torch.testing.assert_close(returned, expected)
    torch.testing.assert_close(edited_in_place, expected)
    assert (returned - model(tokens)[0]).abs().max() > 1e-2
    # a hook that only reads leaves the output as it was
    read = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_pattern", lambda p, h: None)])[0]
    torch.testing.assert_close(read, model(tokens)[0], rtol=1e-5, atol=1e-6)


def test_an_edited_pattern_is_refused_where_it_cannot_be_applied():
    model = small(attention="diff", n_head=4)  # Diff attention normalises after mixing
    tokens = torch.randint(11, (1, 5))
    with pytest.raises(HookError, match="'diff' mechanism does not compute its output as pattern @ v"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda p, h: p * 0)])
    with pytest.raises(HookError, match="pattern @ v"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda p, h: p.mul_(0))])
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))  # reading is fine
    assert cache["pattern", 0].shape == (1, 2, 5, 5)


def test_a_pattern_of_the_wrong_shape_is_refused():
    model, tokens = small(), torch.randint(11, (1, 5))
    with pytest.raises(HookError, match="expected"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda p, h: p[:, :1])])


def test_targets_of_minus_one_are_ignored():
    model = small()
    idx, tgt = torch.randint(11, (2, 8)), torch.randint(11, (2, 8))
    tgt[0, :3] = -1
    logits, loss = model(idx, tgt)
    kept = tgt != -1
    expected = -(logits.log_softmax(-1)[kept].gather(-1, tgt[kept][:, None])).mean()
    torch.testing.assert_close(loss, expected)
    metrics = token_metrics(logits, tgt)
    torch.testing.assert_close(metrics["loss"], expected)
    acc = (logits.argmax(-1)[kept] == tgt[kept]).float().mean()
    torch.testing.assert_close(metrics["acc"], acc)


def test_a_float64_model_computes_a_float64_loss():
    model = small().double()
    idx, tgt = torch.randint(11, (2, 8)), torch.randint(11, (2, 8))
    logits, loss = model(idx, tgt)
    assert loss.dtype == torch.float64
    expected = F.cross_entropy(logits.reshape(-1, 11), tgt.reshape(-1))
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    assert token_metrics(logits, tgt)["loss"].dtype == torch.float64
    bf16 = small().to(torch.bfloat16)
    assert bf16(idx, tgt)[1].dtype == torch.float32  # low-precision logits are widened, as before


def test_the_encoder_decoder_honours_an_edited_cross_attention_pattern():
    from probattn.model import Seq2Seq, Seq2SeqConfig

    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(vocab_size=30, max_len=16, n_enc_layer=1, n_dec_layer=2, n_head=2, n_embd=16,
                                  ffn=24, dropout=0.0)).eval()
    src, tgt = torch.randint(3, 30, (2, 7)), torch.randint(3, 30, (2, 5))

    def first_key(pattern, hook):  # every query reads source position 0 only
        edited = torch.zeros_like(pattern)
        edited[..., 0] = 1.0
        return edited

    names = ["decoder.0.cross_attn.hook_z", "decoder.0.cross_attn.hook_v"]
    with model.hooks([("decoder.0.cross_attn.hook_pattern", first_key)]):
        (edited, _), cache = model.run_with_cache(src, tgt, names_filter=names)
    z, v = cache[names[0]], cache[names[1]]  # (batch, pos, head, d_head)
    torch.testing.assert_close(z, v[:, :1].expand_as(z))
    assert not torch.allclose(edited, model(src, tgt)[0])
    assert model.double()(src.long(), tgt, tgt)[1].dtype == torch.float64
