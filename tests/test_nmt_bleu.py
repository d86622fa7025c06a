"""Scores: sacrebleu's corpus numbers, the labelled tokenized-lowercased variant, and a paired
bootstrap whose full-sample statistics reproduce the corpus scores."""

from __future__ import annotations

import pytest

sacrebleu = pytest.importorskip("sacrebleu")

from probattn.nmt.bleu import paired_bootstrap, score  # noqa: E402

REFS = ["The cat sat on the mat.", "He went home early, didn't he?", "It rains today.", "We like green tea.",
        "She reads a long book.", "The train was late again."]
GOOD = ["The cat sat on the mat.", "He went home early, didn't he?", "It is raining today.", "We like green tea.",
        "She reads a long book.", "The train was late again."]
BAD = ["A cat sat on mat.", "He goes home.", "Rain today.", "We like tea.", "She reads book.", "Train late."]


def test_scores_match_sacrebleu_and_carry_signatures():
    s = score(BAD, REFS)
    assert s["bleu"] == pytest.approx(sacrebleu.corpus_bleu(BAD, [REFS]).score)
    assert s["chrf"] == pytest.approx(sacrebleu.corpus_chrf(BAD, [REFS]).score)
    assert "tok:13a" in s["bleu_signature"] and "case:mixed" in s["bleu_signature"]
    assert "tok:none" in s["bleu_tok_lc_signature"] and "case:lc" in s["bleu_tok_lc_signature"]
    assert "pretok:13a" in s["bleu_tok_lc_signature"]
    # lowercasing: a case-only difference costs cased BLEU, not the lowercased one
    upper = [r.upper() for r in REFS]
    s2 = score(upper, REFS)
    assert s2["bleu_tok_lc"] == pytest.approx(100.0) and s2["bleu"] < 20


def test_paired_bootstrap():
    result = paired_bootstrap(BAD, GOOD, REFS, n=200, seed=1)
    full = score(GOOD, REFS)["bleu"] - score(BAD, REFS)["bleu"]
    assert result["bleu"]["delta"] == pytest.approx(full)
    assert result["bleu"]["ci_low"] > 0 and result["bleu"]["p_b_not_better"] < 0.05
    same = paired_bootstrap(GOOD, GOOD, REFS, n=50)
    assert same["chrf"]["delta"] == 0 and same["chrf"]["p_b_not_better"] == 1.0
    with pytest.raises(ValueError):
        paired_bootstrap(GOOD, GOOD[:-1], REFS)
