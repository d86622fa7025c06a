"""The trained network's knobs mapped onto the theory's sigma_s, sigma_w, kappa, and P* from
the existing theory code (``studies/phase/theory.py``, causal task).

**Loss -> kappa, sigma_w.** Cross-entropy at logits f near the uniform prediction (where training
starts and where the disordered phase sits) is, to second order,
``(1 / (2V)) ||f - V (e_y - 1/V)||^2``: a Gaussian likelihood with kappa = V and targets scaled
by V. Scaling the targets by V is the theory with kappa / V^2 and sigma_w / V (the readout
absorbs the scale), so cross-entropy reads as **kappa = 1 / V, sigma_w = sigma / V**.

**Weight decay -> sigma.** AdamW's decoupled step ``theta -= lr wd theta`` is, read as gradient
descent, the gradient of ``(wd / 2) ||theta||^2`` added to the *mean* loss over the N = P T
scored targets (T per sequence); times N that is a Gaussian prior of variance ``1 / (wd N)`` on
every weight. A prior that stays fixed while P grows (the theory's setting) therefore needs
**wd = 1 / (sigma^2 N)**: this is the ``prior`` convention of the study. The ``fixed-wd``
convention (one wd for every P, as practitioners usually do) makes the prior sharpen with the
data, sigma^2 = 1 / (wd N): the theory's data axis then drops out (likelihood and prior both grow
like N) and only the Occam term still depends on P. Adam's preconditioning is outside this
reading (its fixed point ``g / sqrt(v) = -wd theta`` is not a MAP), so the mapping is an
order-of-magnitude one, and that is part of what the experiment tests.

**Score prior -> sigma_s.** The theory's prior is on the scores S; the network's scores are
products of embeddings and W_Q, W_K. We set sigma_s = sigma (the same per-entry scale), which
the factored-prior section of docs/phase-transitions.md shows is only a matching of scales.

**Convention for P:** sequences (distinct training sequences, each reused every epoch); tokens
are P times the scored positions per sequence (L - 1 for copy).
"""

from __future__ import annotations

import numpy as np

from .. import theory as th


def matched_scales(V: int, sigma: float) -> dict:
    return {"sigma_s": float(sigma), "sigma_w": float(sigma) / V, "kappa": 1.0 / V}


def theory_config(L: int, V: int, sigma: float) -> th.TheoryConfig:
    """The causal copy task at the matched scales (the trained nets are causal)."""
    return th.TheoryConfig(L=int(L), V=int(V), causal=True, **matched_scales(V, sigma))


def prior_weight_decay(sigma: float, P: int, targets_per_seq: int) -> float:
    """The AdamW weight decay whose gradient-descent reading is a fixed N(0, sigma^2) prior."""
    return 1.0 / (sigma**2 * P * targets_per_seq)


def implied_sigma(wd: float, P, targets_per_seq: int):
    """The prior std that a fixed weight decay implies at data size P (fixed-wd convention)."""
    return 1.0 / np.sqrt(wd * np.asarray(P, dtype=float) * targets_per_seq)


def theory_transition(kind: str, L: int, V: int, sigma: float) -> dict:
    return th.find_transition(kind, theory_config(L, V, sigma)).to_dict()


def theory_curve(kind: str, L: int, V: int, P_values, sigma=None, wd=None) -> list[float]:
    """m*(P) of the theory's global minimum: at a fixed sigma (prior convention) or, with
    ``wd``, at the sigma each P implies (fixed-wd convention)."""
    P_values = np.asarray(P_values, dtype=float)
    sigmas = (np.full_like(P_values, sigma) if wd is None else implied_sigma(wd, P_values, L - 1))
    out = []
    for P, s in zip(P_values, sigmas):
        cfg = theory_config(L, V, float(s))
        lam, _ = th.global_minimiser(np.array([P]), kind, cfg)
        m, _ = th.order_parameters(lam, kind, L, causal=True)
        out.append(float(np.abs(m[0])))
    return out
