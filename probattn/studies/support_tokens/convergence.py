"""How converged a run is, from its validation curve: the best step and what the last 20 % bought.

``last_20pct_improvement`` = (best validation loss up to 80 % of the steps run) - (best overall),
in nats per token, and the same relative to the first of the two: near zero when the run had
stopped improving well before its end, large when it was still learning.
"""

from __future__ import annotations

from typing import Any


def convergence_record(valid: list[tuple[int, float]]) -> dict[str, Any]:
    """``valid``: (step, validation loss) pairs of one run in step order."""
    if not valid:
        raise ValueError("no validation evaluations")
    last = valid[-1][0]
    best_step, best = min(valid, key=lambda r: (r[1], r[0]))
    early = min(loss for step, loss in valid if step <= 0.8 * last)
    return {"steps_run": last, "best_step": best_step, "best_val_loss": best,
            "best_val_loss_at_80pct": early, "last_20pct_improvement": early - best,
            "last_20pct_improvement_rel": (early - best) / early if early else float("nan"),
            "curve": [list(r) for r in valid]}
