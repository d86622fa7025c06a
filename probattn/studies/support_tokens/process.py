"""The stochastic-process claim made concrete: sequence log-likelihoods and a consistency check.

A causal language model defines, for every n, a law on sequences ``x_2..x_n`` given the first
token ``x_1`` (the GPT has no distribution for ``x_1``, so the process is conditional on it):

    log p(x_2..x_n | x_1) = sum_{t=2..n} log p(x_t | x_<t)

The family is consistent under marginalising the last token,
``sum_v p(x_1..x_n, v) = p(x_1..x_n)``, so (Kolmogorov) one law over infinite sequences exists.
The identity rests on two properties a bug can break: each conditional is normalised, and
appending a token does not change the probabilities of the earlier ones (causality).
:func:`marginalisation_gap` checks it numerically by scoring every one- (or two-) token extension
with separate forward passes and comparing with the prefix's own probability.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor


@torch.no_grad()
def sequence_logprob(model, idx: Tensor) -> Tensor:
    """``log p(x_2..x_n | x_1)`` for each row of ``idx`` (B, n), n <= block_size + 1."""
    if idx.shape[1] < 2:
        return torch.zeros(idx.shape[0], dtype=torch.float64, device=idx.device)
    logits, _ = model(idx[:, :-1])
    logp = torch.log_softmax(logits.double(), dim=-1)
    return logp.gather(-1, idx[:, 1:, None])[..., 0].sum(-1)


@torch.no_grad()
def marginalisation_gap(model, prefix: Tensor, steps: int = 1, batch_size: int = 512) -> float:
    """``log sum_{v_1..v_steps} p(prefix, v) - log p(prefix)``: zero for a consistent process.

    Every extension is scored from scratch (its own forward pass over the whole sequence).
    ``prefix`` is a 1-D tensor of token ids; ``len(prefix) + steps <= block_size + 1``.
    """
    V = model.config.vocab_size
    if prefix.dim() != 1 or prefix.numel() < 1:
        raise ValueError("prefix must be a non-empty 1-D tensor of token ids")
    if prefix.numel() + steps > model.config.block_size + 1:
        raise ValueError("prefix plus the marginalised steps must fit in block_size + 1 tokens")
    base = sequence_logprob(model, prefix[None])[0]
    ends = torch.tensor(list(itertools.product(range(V), repeat=steps)), dtype=prefix.dtype,
                        device=prefix.device)
    scores = []
    for chunk in ends.split(batch_size):
        seqs = torch.cat([prefix.expand(chunk.shape[0], -1), chunk], dim=1)
        scores.append(sequence_logprob(model, seqs))
    total = torch.logsumexp(torch.cat(scores), dim=0)
    return float(total - base)
