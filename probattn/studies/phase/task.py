"""The copy (shift-by-one) task: tokens i.i.d. uniform over V symbols, target = previous token.

Sequences are one-hot ``X[mu, s, :]`` (P x L x V). The target at position t is the token at
t - 1 (cyclically: position 0 copies position L - 1), so the ideal attention row of position t
puts all its mass on t - 1: the pattern ``shift_matrix(L)``. The causal variant (used by the
full network with causal attention) simply drops position 0 from the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import ConfigError


def check_task_sizes(V: int, L: int, P: int) -> None:
    """One clear error for sizes a user can get wrong."""
    if not isinstance(V, int) or V < 2:
        raise ConfigError(f"vocabulary size V must be an integer >= 2, got {V!r}")
    if not isinstance(L, int) or L < 2:
        raise ConfigError(f"sequence length L must be an integer >= 2, got {L!r}")
    if not isinstance(P, int) or P < 1:
        raise ConfigError(f"number of sequences P must be an integer >= 1, got {P!r}")


def shift_matrix(L: int, dtype=torch.float64, device=None, causal: bool = False) -> Tensor:
    """``Shift[t, s] = 1`` iff ``s = t - 1 (mod L)``: the copy-previous-token attention pattern
    (causal: row 0 has no previous token and stays empty)."""
    idx = torch.arange(1 if causal else 0, L, device=device)
    out = torch.zeros(L, L, dtype=dtype, device=device)
    out[idx, (idx - 1) % L] = 1.0
    return out


@dataclass(frozen=True)
class CopyTask:
    """P sequences of length L over V tokens: ``tokens`` (P, L) and their one-hot codes."""

    tokens: Tensor  # (P, L) long
    V: int
    #: causal (non-cyclic) shift: position 0 has no target and attention sees s <= t only
    causal: bool = False

    @property
    def P(self) -> int:
        return self.tokens.shape[0]

    @property
    def L(self) -> int:
        return self.tokens.shape[1]

    def inputs(self, dtype=torch.float64) -> Tensor:
        """One-hot inputs X, shape (P, L, V)."""
        return torch.nn.functional.one_hot(self.tokens, self.V).to(dtype)

    @property
    def n_targets(self) -> int:
        """Target positions per sequence (causal: position 0 has none)."""
        return self.L - 1 if self.causal else self.L

    def targets(self, dtype=torch.float64) -> Tensor:
        """One-hot targets Y with ``Y[:, t] = X[:, t - 1 mod L]``, shape (P, L, V). For the
        causal task row 0 is all zeros and is left out of every loss and evidence."""
        Y = self.inputs(dtype).roll(shifts=1, dims=1)
        if self.causal:
            Y[:, 0] = 0.0
        return Y

    def target_tokens(self) -> Tensor:
        return self.tokens.roll(shifts=1, dims=1)


def make_copy_task(V: int, L: int, P: int, seed: int = 0, causal: bool = False) -> CopyTask:
    """Draw P sequences of L tokens, i.i.d. uniform over V symbols, from ``seed``."""
    check_task_sizes(V, L, P)
    g = torch.Generator().manual_seed(int(seed))
    return CopyTask(torch.randint(0, V, (P, L), generator=g), V, bool(causal))
