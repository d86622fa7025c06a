"""What support tokens are: where they fall, how stable they are, and what perturbing them costs.

* ``support_set``: the bottom ``share`` of margins over a batch of windows, as (window, position)
  pairs (positions counted in the full window, so >= FIRST_INFORMATIVE).
* ``perturbation_test``: substitute the support tokens, or the same number of random tokens
  (uniform over eligible positions, and position-matched: the support positions of other
  windows), or add Gaussian noise to their embeddings only; the loss increase over every target
  of the windows for each. The SVM analogy predicts support tokens hurt more than random ones.
  Given the windows' characters, also against class- and frequency-matched tokens (``class_matched``:
  other positions whose character has the same class and the same factor-of-two frequency band in
  the scored text), so rare punctuation and digits do not pass for "support".
* ``char_profile``: which characters and positions support tokens fall on, against base rates.
* ``jaccard``: overlap of two support sets of the same text (seeds, checkpoints).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .gpt import raw_model
from .prior import FIRST_INFORMATIVE


def support_set(margins: Tensor, share: float = 0.05) -> list[tuple[int, int]]:
    """(window, position) pairs of the smallest ``share`` of margins (n, T - FIRST_INFORMATIVE)."""
    n, width = margins.shape
    k = max(1, int(round(share * n * width)))
    idx = torch.argsort(margins.flatten(), stable=True)[:k]
    return [(int(i) // width, int(i) % width + FIRST_INFORMATIVE) for i in idx]


def jaccard(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> float:
    sa, sb = set(map(tuple, a)), set(map(tuple, b))
    return len(sa & sb) / max(1, len(sa | sb))


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _loss(model, x: Tensor, y: Tensor, emb: Tensor | None = None) -> float:
    dev = _device(model)
    logits = model(x.to(dev))[0] if emb is None else model.forward_embeddings(emb)
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.to(dev).reshape(-1)))


def _substituted(x: Tensor, pairs, vocab: int, g: torch.Generator) -> Tensor:
    out = x.clone()
    for w, t in pairs:
        shift = int(torch.randint(1, max(vocab, 2), (1,), generator=g))
        out[w, t] = (out[w, t] + shift) % vocab
    return out


def _noised(model, x: Tensor, pairs, sigma: float, g: torch.Generator) -> Tensor:
    """Embeddings with Gaussian noise (sigma x the windows' embedding RMS) at ``pairs`` only."""
    emb = model.embed(x.to(_device(model)))
    rms = float(emb.pow(2).mean().sqrt())
    mask = torch.zeros(x.shape, dtype=torch.bool)
    for w, t in pairs:
        mask[w, t] = True
    noise = torch.randn(emb.shape, generator=g) * sigma * rms * mask[..., None]  # drawn on CPU: seeded anywhere
    return emb + noise.to(emb.device, emb.dtype)


def frequency_band(count: int) -> int:
    """Factor-of-two frequency band of a character seen ``count`` times: floor(log2 count)."""
    return max(0, int(count).bit_length() - 1)


def class_matched(support: list[tuple[int, int]], chars: list[list[str]], counts: Counter,
                  g: torch.Generator) -> tuple[list[tuple[int, int]], int]:
    """One draw of positions matching ``support`` token by token in character class and frequency band.

    Drawn without replacement among the eligible positions that are not support tokens; where a
    (class, band) has too few, the rest come from the same class, then from any position. Returns
    the positions and how many needed such a fallback.
    """
    taken = set(map(tuple, support))
    others = [(w, t) for w in range(len(chars)) for t in range(FIRST_INFORMATIVE, len(chars[0]))
              if (w, t) not in taken]

    def key(w, t):
        c = chars[w][t]
        return char_class(c), frequency_band(counts.get(c, 0))

    order = torch.randperm(len(others), generator=g).tolist()  # one shuffle: every bucket is a uniform draw
    shuffled = [(others[i], key(*others[i])) for i in order]
    chosen: list[tuple[int, int]] = []
    used: set[tuple[int, int]] = set()
    fallbacks = 0
    for w, t in support:
        want = key(w, t)
        pick = None
        # same class and band, else same class, else any position
        for level, same in enumerate((lambda k, want=want: k == want, lambda k, want=want: k[0] == want[0],
                                      lambda k, want=want: True)):
            pick = next((p for p, k in shuffled if p not in used and same(k)), None)
            if pick is not None:
                fallbacks += level > 0
                break
        if pick is None:  # fewer non-support positions than support tokens
            pick = (w, t)
            fallbacks += 1
        used.add(pick)
        chosen.append(pick)
    return chosen, fallbacks


@torch.no_grad()
def perturbation_test(model, x: Tensor, y: Tensor, support: list[tuple[int, int]], draws: int = 8,
                      sigma: float = 1.0, seed: int = 0, chars: list[list[str]] | None = None,
                      char_counts: Counter | None = None) -> dict[str, Any]:
    """Loss increases (perturbed - clean, nats/char over every target) for support vs random tokens.

    With ``chars`` (the windows' characters) also against class- and frequency-matched tokens; the
    bands come from ``char_counts`` (character counts of the scored text; default: the windows')."""
    gpt = raw_model(model)
    gpt.eval()
    x, y = x.cpu(), y.cpu()
    vocab = gpt.config.vocab_size
    n, T = x.shape
    clean = _loss(gpt, x, y)
    g = torch.Generator().manual_seed(seed)
    k = len(support)
    eligible = [(w, t) for w in range(n) for t in range(FIRST_INFORMATIVE, T)]
    out: dict[str, Any] = {"clean": clean, "count": k, "draws": draws, "sigma": sigma}
    rows: dict[str, list[float]] = {f"{kind}_{how}": [] for kind in ("substitute", "noise")
                                    for how in ("support", "random", "position_matched")}
    for _ in range(draws):
        uniform = [eligible[int(i)] for i in torch.randperm(len(eligible), generator=g)[:k]]
        perm = torch.randperm(n, generator=g)  # same positions, other windows
        matched = [(int(perm[w]), t) for w, t in support]
        for how, pairs in (("support", support), ("random", uniform), ("position_matched", matched)):
            rows[f"substitute_{how}"].append(_loss(gpt, _substituted(x, pairs, vocab, g), y) - clean)
            rows[f"noise_{how}"].append(_loss(gpt, x, y, _noised(gpt, x, pairs, sigma, g)) - clean)
    hows = ["random", "position_matched"]
    if chars is not None:  # a generator of its own: the draws above stay those of earlier studies
        counts = char_counts if char_counts is not None else Counter(c for row in chars for c in row)
        gm = torch.Generator().manual_seed(seed + 7_919)
        fallbacks = 0
        for kind in ("substitute", "noise"):
            rows[f"{kind}_class_matched"] = []
        for _ in range(draws):
            matched, missed = class_matched(support, chars, counts, gm)
            fallbacks += missed
            rows["substitute_class_matched"].append(_loss(gpt, _substituted(x, matched, vocab, gm), y) - clean)
            rows["noise_class_matched"].append(_loss(gpt, x, y, _noised(gpt, x, matched, sigma, gm)) - clean)
        out["class_matched_fallback_share"] = fallbacks / max(1, draws * k)
        hows.append("class_matched")
    out.update({key: sum(v) / len(v) for key, v in rows.items()})
    for kind in ("substitute", "noise"):
        for how in hows:
            ref = out[f"{kind}_{how}"]
            out[f"{kind}_ratio_{how}"] = out[f"{kind}_support"] / ref if ref else float("nan")
    return out


def char_class(c: str) -> str:
    if c == " ":
        return "space"
    if c == "\n":
        return "newline"
    if c.isalpha():
        return "letter"
    if c.isdigit():
        return "digit"
    return "punctuation"


def char_profile(chars: list[list[str]], support: list[tuple[int, int]]) -> dict[str, Any]:
    """Characters / classes / positions of the support tokens against all eligible positions."""
    n, T = len(chars), len(chars[0])
    base = Counter(chars[w][t] for w in range(n) for t in range(FIRST_INFORMATIVE, T))
    sup = Counter(chars[w][t] for w, t in support)
    total_b, total_s = sum(base.values()), max(1, sum(sup.values()))
    base_cls, sup_cls = Counter(), Counter()
    for c, v in base.items():
        base_cls[char_class(c)] += v
    for c, v in sup.items():
        sup_cls[char_class(c)] += v
    classes = {c: {"support_share": sup_cls[c] / total_s, "base_share": base_cls[c] / total_b}
               for c in sorted(base_cls)}
    top = [{"char": c, "support_share": v / total_s, "base_share": base[c] / total_b}
           for c, v in sup.most_common(8)]
    positions = [t for _, t in support]
    # the previous character: support tokens are read by the *next* prediction's context
    prev = Counter(chars[w][t - 1] for w, t in support)
    return {"classes": classes, "top_chars": top, "mean_position": sum(positions) / max(1, len(positions)),
            "uniform_mean_position": (FIRST_INFORMATIVE + T - 1) / 2,
            "position_histogram": torch.histc(torch.tensor(positions, dtype=torch.float), bins=8, min=0,
                                              max=T).tolist(),
            "top_previous_chars": [{"char": c, "support_share": v / total_s} for c, v in prev.most_common(5)]}
