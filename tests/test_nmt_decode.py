"""Decoding: beam 1 = greedy, cached = uncached, batched = one sentence at a time (padding),
finished hypotheses stop, the length limit holds, and beam search with a beam wide enough to keep
every prefix finds the brute-force best length-normalised hypothesis."""

from __future__ import annotations

import itertools

import pytest
import torch

from probattn.model import Seq2Seq, Seq2SeqConfig
from probattn.nmt.decode import beam_search, beam_search_scored, greedy
from probattn.nmt.subword import EOS

from .mechanisms import MODEL_OPTIONS, mechanisms


def model(attention="softmax", V=40, ramp=0.8, offset=0.0, seed=0, **kw):
    """A random model whose target positions drift toward the EOS embedding (``offset + ramp * t``),
    so that, as in a trained model, sentences end, and at different steps."""
    torch.manual_seed(seed)
    options = MODEL_OPTIONS[attention]
    cfg = Seq2SeqConfig(vocab_size=V, max_len=12, n_enc_layer=2, n_dec_layer=2, n_head=2, n_embd=16, ffn=32,
                        dropout=0.0, enc_attention=attention, dec_attention=attention,
                        cross_attention=attention, positions="learned", enc_attention_options=options,
                        dec_attention_options=options, cross_attention_options=options, **kw)
    m = Seq2Seq(cfg).eval()
    with torch.no_grad():
        e = m.tgt_embed.weight[EOS] / m.tgt_embed.weight[EOS].norm()
        m.tgt_pos.weight += (offset + ramp * torch.arange(12.0))[:, None] * e
    return m


def sources():
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, 40, (4, 7), generator=g)
    src[1, 4:] = 0  # right padding (PAD = 0)
    src[2, 2:] = 0
    src[:, -1][src[:, -1] != 0] = EOS
    for i, n in ((1, 4), (2, 2)):
        src[i, n - 1] = EOS
    return src


@pytest.mark.parametrize("attention", mechanisms())
def test_beam_one_equals_greedy_and_cache_equals_no_cache(attention):
    src = sources()
    # the drift toward EOS that makes this random model end sentences, at different steps
    ends = lambda g: all(len(h) < 12 for h in g) and len({len(h) for h in g}) > 1  # noqa: E731
    m = next((m for m in (model(attention, ramp=r) for r in (0.8, 1.2)) if ends(greedy(m, src))), None)
    assert m is not None, "no drift makes this model end its sentences at different steps"
    g = greedy(m, src)
    assert g == greedy(m, src, use_cache=False)
    assert beam_search(m, src, beam=1) == g
    assert beam_search(m, src, beam=3) == beam_search(m, src, beam=3, use_cache=False)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_batched_equals_one_sentence_at_a_time(norm):
    m, src = model("gpam", norm=norm), sources()
    for decode in (lambda s: greedy(m, s), lambda s: beam_search(m, s, beam=4, length_penalty=0.6)):
        batched = decode(src)
        for i in range(src.shape[0]):
            n = int((src[i] != 0).sum())
            assert decode(src[i: i + 1, :n]) == [batched[i]]


def test_finished_hypotheses_stop_and_length_limit_holds():
    m, src = model(), sources()
    for limit in (1, 3, 6):
        for hyp in greedy(m, src, max_new_tokens=limit) + beam_search(m, src, beam=3, max_new_tokens=limit):
            assert len(hyp) <= limit and EOS not in hyp
    # a greedy hypothesis that stopped is a prefix of nothing longer: decoding further changes nothing
    short, longer = greedy(m, src, max_new_tokens=8), greedy(m, src, max_new_tokens=11)
    for a, b in zip(short, longer):
        if len(a) < 8:
            assert a == b
    # a model whose first choice is EOS returns an empty hypothesis at once
    eager = model(offset=50.0)
    assert greedy(eager, src) == [[]] * src.shape[0] == beam_search(eager, src, beam=3)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_finds_the_brute_force_best(alpha):
    V, L = 7, 3  # 3 real tokens + EOS can be generated (PAD, BOS never), 3 steps: every prefix fits
    m = model(V=V, ramp=0.0, seed=3)
    src = torch.tensor([[4, 3, 6, 5, EOS]])
    score, tokens = beam_search_scored(m, src, beam=V ** L, length_penalty=alpha, max_new_tokens=L)[0]

    def logp(seq):
        tgt = torch.tensor([[1] + list(seq)])
        with torch.no_grad():
            lp = torch.log_softmax(m(src, tgt[:, :-1])[0].float(), -1)[0]
        return float(sum(lp[i, t] for i, t in enumerate(seq)))

    candidates = []
    for n in range(1, L + 1):
        for body in itertools.product(range(3, V), repeat=n - 1):
            seq = body + (EOS,)
            candidates.append((logp(seq) / n ** alpha, list(seq)))
    for body in itertools.product(range(3, V), repeat=L):
        candidates.append((logp(body) / L ** alpha, list(body)))
    best = max(candidates)
    assert tokens == best[1]
    assert score == pytest.approx(best[0], abs=1e-5)
