"""Input perturbations: Gaussian noise on the embeddings, and token substitution, deletion, swap.

Every perturbation is seeded (a ``torch.Generator``) and deterministic. Token perturbations act
on the *context*; the targets stay the clean text (docs/support-tokens.md, "Robustness"):

* ``substitute``: each input token is replaced, with probability ``rate``, by a different token
  drawn uniformly from the vocabulary; the target at position t is the clean ``x_{t+1}``;
* ``delete``: each token of a longer clean window is dropped with probability ``rate``; the
  target after each kept token is the token that followed it in the clean text;
* ``swap``: non-overlapping adjacent pairs are swapped, each position starting a swap with
  probability ``rate``; the target at position t is the clean ``x_{t+1}``.

So the model always predicts the true next character from a corrupted history.
"""

from __future__ import annotations

import torch
from torch import Tensor

TOKEN_KINDS = ("substitute", "delete", "swap")


def gaussian_embedding_noise(emb: Tensor, sigma: float, rms: float, generator: torch.Generator) -> Tensor:
    """``emb + sigma * rms * N(0, I)``: noise relative to the clean embedding RMS."""
    noise = torch.randn(emb.shape, generator=generator, dtype=emb.dtype, device="cpu").to(emb.device)
    return emb + sigma * rms * noise


def substitute(window: Tensor, rate: float, vocab_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(inputs, targets) of length T from a clean window of T + 1 tokens."""
    x, y = window[:-1].clone(), window[1:]
    hit = torch.rand(x.shape, generator=generator) < rate
    # a uniformly random *different* token: shift by 1..V-1
    shift = torch.randint(1, max(vocab_size, 2), x.shape, generator=generator)
    x[hit] = (x[hit] + shift[hit]) % vocab_size
    return x, y


def swap(window: Tensor, rate: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    x, y = window[:-1].clone(), window[1:]
    start = torch.rand(x.shape, generator=generator) < rate
    i = 0
    T = x.numel()
    while i < T - 1:  # left to right, so the swapped pairs never overlap
        if start[i]:
            x[i], x[i + 1] = x[i + 1].clone(), x[i].clone()
            i += 2
        else:
            i += 1
    return x, y


def delete(window: Tensor, rate: float, T: int, generator: torch.Generator) -> tuple[Tensor, Tensor] | None:
    """From a clean window longer than T + 1: the first T kept tokens and their clean successors.

    Returns None if fewer than T tokens survive (the caller draws a longer window).
    """
    source, successors = window[:-1], window[1:]
    keep = torch.rand(source.shape, generator=generator) >= rate
    kept = torch.nonzero(keep).flatten()
    if kept.numel() < T:
        return None
    kept = kept[:T]
    return source[kept], successors[kept]


def perturb_window(kind: str, window: Tensor, rate: float, T: int, vocab_size: int,
                   generator: torch.Generator) -> tuple[Tensor, Tensor] | None:
    if kind == "substitute":
        return substitute(window[: T + 1], rate, vocab_size, generator)
    if kind == "swap":
        return swap(window[: T + 1], rate, generator)
    if kind == "delete":
        return delete(window, rate, T, generator)
    raise ValueError(f"unknown perturbation {kind!r}; available: {', '.join(TOKEN_KINDS)}")
