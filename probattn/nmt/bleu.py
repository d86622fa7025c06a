"""BLEU and chrF through sacrebleu, each labelled, and paired bootstrap between two systems.

* ``bleu``: detokenized, cased BLEU, 13a tokenization (the sacrebleu default; signature kept).
* ``chrf``: chrF2 on detokenized, cased text (signature kept).
* ``bleu_tok_lc``: tokenized, lowercased BLEU, the number fairseq's IWSLT14 recipe prints. There
  the text is Moses-tokenized before scoring; here both sides are tokenized with sacrebleu's 13a
  (mteval, Moses-like) tokenizer and scored with ``tok:none case:lc``. Text that is already
  tokenized and lowercased (``pretokenized=True``, the iwslt14 folder) is scored as it is.

Paired bootstrap (Koehn 2004): resample the test sentences with replacement, compute both systems'
corpus scores from per-sentence sufficient statistics, and report the mean difference, its 95%
interval and the share of resamples in which B does not beat A (a one-sided p-value).
sacrebleu is the ``nmt`` extra, imported only when scoring.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from ..interrupts import interrupt_point


def _sacrebleu():
    try:
        import sacrebleu  # noqa: F401
        from sacrebleu.metrics import BLEU, CHRF
    except ImportError:
        raise ConfigError("scoring translations needs sacrebleu: pip install 'probattn[nmt]'") from None
    return BLEU, CHRF


def _tokenize_13a(lines: Sequence[str]) -> list[str]:
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tok = Tokenizer13a()
    return [tok(line) for line in lines]


def metrics(pretokenized: bool = False) -> dict:
    """name -> (sacrebleu metric, preprocessing of hypotheses and references)."""
    BLEU, CHRF = _sacrebleu()
    same = lambda lines: list(lines)  # noqa: E731
    return {
        "bleu": (BLEU(), same),
        "chrf": (CHRF(), same),
        "bleu_tok_lc": (BLEU(tokenize="none", lowercase=True, force=True),  # tokenized on purpose
                        same if pretokenized else _tokenize_13a),
    }


def score(hyps: Sequence[str], refs: Sequence[str], pretokenized: bool = False) -> dict:
    """``{name: value}`` plus ``{name}_signature`` for each metric."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    out: dict = {}
    for name, (metric, prep) in metrics(pretokenized).items():
        result = metric.corpus_score(prep(hyps), [prep(refs)])
        out[name] = float(result.score)
        signature = str(metric.get_signature())
        out[f"{name}_signature"] = signature + ("|pretok:13a" if name == "bleu_tok_lc" and not pretokenized else "")
    return out


def sentence_stats(metric, prep, hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    return np.asarray(metric._extract_corpus_statistics(prep(hyps), [prep(refs)]), dtype=np.int64)


def paired_bootstrap(hyps_a: Sequence[str], hyps_b: Sequence[str], refs: Sequence[str], n: int = 1000,
                     seed: int = 12345, pretokenized: bool = False) -> dict:
    """B minus A per metric: ``{metric: {delta, mean, ci_low, ci_high, p_b_not_better}}``."""
    if not (len(hyps_a) == len(hyps_b) == len(refs)) or not refs:
        raise ValueError("paired bootstrap needs two equally long, non-empty hypothesis lists")
    from ..memory import check_fits

    check_fits(2 * 8 * n * len(refs), f"{n} bootstrap resamples of {len(refs)} sentences", "lower --bootstrap")
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, len(refs), size=(n, len(refs)))
    out = {}
    for name, (metric, prep) in metrics(pretokenized).items():
        sa, sb = sentence_stats(metric, prep, hyps_a, refs), sentence_stats(metric, prep, hyps_b, refs)
        full = lambda s, metric=metric: metric._compute_score_from_stats(list(s.sum(0))).score  # noqa: E731
        deltas = np.empty(n)
        for i, idx in enumerate(samples):
            interrupt_point("bootstrap resample")
            deltas[i] = full(sb[idx]) - full(sa[idx])
        out[name] = {"delta": float(full(sb) - full(sa)), "mean": float(deltas.mean()),
                     "ci_low": float(np.percentile(deltas, 2.5)), "ci_high": float(np.percentile(deltas, 97.5)),
                     "p_b_not_better": float((deltas <= 0).mean()), "resamples": n}
    return out
