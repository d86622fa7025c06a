"""ESS and R-hat from ArviZ (the ``bayes`` extra), imported only when asked for."""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError


def _arviz():
    import warnings

    try:
        with warnings.catch_warnings():  # ArviZ announces its 1.0 refactor on import
            warnings.simplefilter("ignore", FutureWarning)
            import arviz
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("ESS and R-hat need ArviZ: pip install 'probattn[bayes]' (or pip install arviz)") from None
    return arviz


def ess_rhat(draws) -> dict[str, np.ndarray]:
    """Bulk ESS, tail ESS and rank-normalised split R-hat per quantity.

    draws: array (chains, draws) or (chains, draws, k)."""
    az = _arviz()
    arr = np.asarray(draws, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[1] < 4:
        raise ConfigError(f"draws must be (chains, draws[, k]) with at least 4 draws, got {arr.shape}")
    ds = az.convert_to_dataset(arr)
    var = next(iter(ds.data_vars))
    return {"ess_bulk": np.asarray(az.ess(ds, method="bulk")[var]),
            "ess_tail": np.asarray(az.ess(ds, method="tail")[var]),
            "rhat": np.asarray(az.rhat(ds)[var])}


def summary(draws) -> dict[str, float]:
    """The worst case over quantities: min bulk ESS, min tail ESS, max R-hat."""
    d = ess_rhat(draws)
    return {"min_ess_bulk": float(np.min(d["ess_bulk"])), "min_ess_tail": float(np.min(d["ess_tail"])),
            "max_rhat": float(np.max(d["rhat"]))}
