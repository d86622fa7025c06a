"""Copy-head emergence in trained transformers against the phase-transition theory (issue 24).

``tasks`` (copy and induction sequences), ``net`` (small attention-only or MLP transformers,
softmax or linear), ``order`` (order parameters read off attention patterns), ``matching``
(AdamW and cross-entropy mapped onto the theory's sigma_s, sigma_w, kappa; P*), ``runs`` (one
training run, its folder, the pool), ``results`` (the typed results), ``analysis`` (thresholds,
hysteresis, ordering of the heads), ``report`` and ``experiment`` (``probattn experiment
copy-emergence``). See docs/phase-transitions.md, "Trained transformers".
"""
