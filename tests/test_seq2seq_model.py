"""The encoder-decoder: equal to torch.nn.Transformer given the same weights (softmax, Pre-LN),
padding changes nothing on real positions, cached decoding equals the full forward, embeddings
share as configured, hook names and shapes follow the GPT's."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from probattn.errors import ConfigError
from probattn.model import Seq2Seq, Seq2SeqConfig
from probattn.model.seq2seq import sinusoidal_positions

from .mechanisms import mechanisms

ALL = mechanisms()


def cfg(attention="softmax", **kw):
    base = dict(vocab_size=30, max_len=16, n_enc_layer=2, n_dec_layer=2, n_head=2, n_embd=16, ffn=24, dropout=0.0,
                enc_attention=attention, dec_attention=attention, cross_attention=attention)
    return Seq2SeqConfig(**{**base, **kw})


def tokens(seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 30, (3, 7), generator=g)
    src[1, 5:] = 0
    src[2, 3:] = 0
    return src, torch.randint(3, 30, (3, 6), generator=g)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
def test_equals_torch_transformer_with_the_same_weights():
    torch.manual_seed(0)
    m = Seq2Seq(cfg(share="all")).double().eval()
    ref = nn.Transformer(16, 2, 2, 2, 24, dropout=0.0, batch_first=True, norm_first=True).double().eval()
    with torch.no_grad():
        for ours, theirs in zip(m.encoder, ref.encoder.layers):
            theirs.self_attn.in_proj_weight.copy_(ours.attn.qkv_proj.weight)
            theirs.self_attn.in_proj_bias.copy_(ours.attn.qkv_proj.bias)
            theirs.self_attn.out_proj.load_state_dict(ours.attn.out_proj.state_dict())
            theirs.linear1.load_state_dict(ours.mlp.fc1.state_dict())
            theirs.linear2.load_state_dict(ours.mlp.fc2.state_dict())
            theirs.norm1.load_state_dict(ours.norms[0].state_dict())
            theirs.norm2.load_state_dict(ours.norms[1].state_dict())
        for ours, theirs in zip(m.decoder, ref.decoder.layers):
            theirs.self_attn.in_proj_weight.copy_(ours.attn.qkv_proj.weight)
            theirs.self_attn.in_proj_bias.copy_(ours.attn.qkv_proj.bias)
            theirs.self_attn.out_proj.load_state_dict(ours.attn.out_proj.state_dict())
            theirs.multihead_attn.in_proj_weight.copy_(torch.cat((ours.cross_attn.q_proj.weight,
                                                                  ours.cross_attn.kv_proj.weight)))
            theirs.multihead_attn.in_proj_bias.copy_(torch.cat((ours.cross_attn.q_proj.bias,
                                                                ours.cross_attn.kv_proj.bias)))
            theirs.multihead_attn.out_proj.load_state_dict(ours.cross_attn.out_proj.state_dict())
            theirs.linear1.load_state_dict(ours.mlp.fc1.state_dict())
            theirs.linear2.load_state_dict(ours.mlp.fc2.state_dict())
            for i in range(3):
                getattr(theirs, f"norm{i + 1}").load_state_dict(ours.norms[i].state_dict())
        ref.encoder.norm.load_state_dict(m.enc_ln.state_dict())
        ref.decoder.norm.load_state_dict(m.dec_ln.state_dict())
    src, tgt = tokens()
    pos = sinusoidal_positions(16, 16).double()
    emb = lambda t: m.tgt_embed(t) * math.sqrt(16) + pos[: t.shape[1]]  # noqa: E731
    causal = nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.bool)
    with torch.no_grad():
        y = ref(emb(src), emb(tgt), tgt_mask=causal, src_key_padding_mask=src == 0, memory_key_padding_mask=src == 0)
        expected = y @ m.tgt_embed.weight.T
        torch.testing.assert_close(m(src, tgt)[0], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("attention", ALL)
@pytest.mark.parametrize("norm,positions", [("pre", "sinusoidal"), ("post", "learned")])
def test_padding_and_cache(attention, norm, positions):
    torch.manual_seed(1)
    m = Seq2Seq(cfg(attention, norm=norm, positions=positions)).double().eval()
    src, tgt = tokens()
    with torch.no_grad():
        logits, _ = m(src, tgt)
        for i, n in ((1, 5), (2, 3)):  # a padded row = that row alone, unpadded
            torch.testing.assert_close(logits[i], m(src[i:i + 1, :n], tgt[i:i + 1])[0][0], rtol=1e-9, atol=1e-10)
        memory, mask = m.encode(src)
        cache, steps = m.new_cache(), []
        for t in range(tgt.shape[1]):
            steps.append(m.decode(tgt[:, t:t + 1], memory, mask, cache, start=t))
        torch.testing.assert_close(torch.cat(steps, 1), logits, rtol=1e-9, atol=1e-10)


def test_sharing_hooks_and_errors():
    src, tgt = tokens()
    none, dec, both = (Seq2Seq(cfg(share=s)) for s in ("none", "decoder", "all"))
    assert none.lm_head.weight is not none.tgt_embed.weight and none.src_embed is not none.tgt_embed
    assert dec.lm_head.weight is dec.tgt_embed.weight and dec.src_embed is not dec.tgt_embed
    assert both.src_embed is both.tgt_embed and both.lm_head.weight is both.tgt_embed.weight
    V, C = 30, 16
    assert none.num_params() - dec.num_params() == V * C == dec.num_params() - both.num_params()
    _, cache = dec.run_with_cache(src, tgt, names_filter=lambda n: "hook_pattern" in n or n.endswith("hook_resid_post"))
    assert cache["encoder.0.attn.hook_pattern"].shape == (3, 2, 7, 7)
    assert cache["decoder.1.attn.hook_pattern"].shape == (3, 2, 6, 6)
    assert cache["decoder.1.cross_attn.hook_pattern"].shape == (3, 2, 6, 7)
    assert cache["decoder.0.hook_resid_post"].shape == (3, 6, 16)
    pattern = cache["decoder.0.cross_attn.hook_pattern"]
    assert torch.all(pattern[2, :, :, 3:] == 0)  # padded source keys get no weight
    with pytest.raises(ValueError, match="exceeds max_len"):
        dec(torch.ones(1, 17, dtype=torch.long), tgt[:1])
    with pytest.raises(ConfigError, match="norm"):
        cfg(norm="sandwich")
    with pytest.raises(ConfigError, match="pairs heads"):
        cfg(cross_attention="diff", n_head=1)


@pytest.mark.parametrize("ids, words", [
    ({"pad_id": 1}, "pad_id, bos_id and eos_id must be different tokens, got pad_id=1, bos_id=1, eos_id=2"),
    ({"eos_id": 0}, "must be different tokens, got pad_id=0, bos_id=1, eos_id=0"),
    ({"bos_id": 40}, "bos_id must be a token id in [0, vocab_size=40), got 40"),
    ({"pad_id": -1}, "pad_id must be a token id in [0, vocab_size=40), got -1"),
    ({"eos_id": 2.0}, "eos_id must be a token id in [0, vocab_size=40), got 2.0"),
    ({"pad_id": False}, "pad_id must be a token id"),
])
def test_special_ids_that_collide_or_leave_the_vocabulary_are_refused(ids, words):
    with pytest.raises(ConfigError) as info:
        Seq2SeqConfig(vocab_size=40, **ids)
    assert words in str(info.value), str(info.value)
    assert Seq2SeqConfig(vocab_size=3, pad_id=2, bos_id=0, eos_id=1).vocab_size == 3  # any distinct ids fit
