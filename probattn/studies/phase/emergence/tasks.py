"""Training sequences for the emergence study: the causal copy task and the induction task.

Both return token sequences (P, L) with targets and a loss mask, in next-position form: the
network's output at position t is scored against ``targets[:, t]`` where ``mask[:, t]``.

- copy: tokens i.i.d. uniform over V; the target at t >= 1 is the token at t - 1 (the causal
  shift task of the theory; position 0 has none).
- induction: a block b of h = L / 2 distinct tokens, then the same block rotated by a random
  r in 1 .. h - 1 (b_r, ..., b_{h-1}, b_0, ..., b_{r-1}). At a position t of the second block the
  target is the next token x_{t+1}, which is the token that followed the previous occurrence of
  x_t, except after b_{h-1} (the block wraps there) and at t = L - 1: those two are not scored,
  leaving h - 2 targets. The random rotation makes the distance to the earlier occurrence vary,
  so no positional head can do it: a layer-1 previous-token head plus a layer-2 induction head
  (attend to the key whose previous token equals x_t) solve it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ....errors import ConfigError

TASKS = ("copy", "induction")


@dataclass(frozen=True)
class Sequences:
    tokens: Tensor  # (P, L) long
    targets: Tensor  # (P, L) long; arbitrary where not masked
    mask: Tensor  # (P, L) bool: positions that carry a target

    @property
    def P(self) -> int:
        return self.tokens.shape[0]


def check_sizes(task: str, V: int, L: int) -> None:
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if not isinstance(V, int) or V < 2 or not isinstance(L, int) or L < 3:
        raise ConfigError(f"need integers V >= 2 and L >= 3, got V = {V!r}, L = {L!r}")
    if task == "induction" and (L % 2 or L // 2 > V or L < 6):
        raise ConfigError(f"the induction task needs an even L >= 6 with L / 2 <= V distinct tokens, "
                          f"got L = {L}, V = {V}")


def targets_per_sequence(task: str, L: int) -> int:
    """Scored positions per sequence: L - 1 (copy), h - 2 (induction)."""
    return L - 1 if task == "copy" else L // 2 - 2


def make_sequences(task: str, V: int, L: int, P: int, generator: torch.Generator) -> Sequences:
    check_sizes(task, V, L)
    if task == "copy":
        tokens = torch.randint(0, V, (P, L), generator=generator)
        targets = tokens.roll(1, dims=1)
        mask = torch.ones(P, L, dtype=torch.bool)
        mask[:, 0] = False
        return Sequences(tokens, targets, mask)
    h = L // 2
    block = torch.stack([torch.randperm(V, generator=generator)[:h] for _ in range(P)])
    shift = torch.randint(1, h, (P,), generator=generator)
    order = (torch.arange(h)[None, :] + shift[:, None]) % h
    tokens = torch.cat([block, block.gather(1, order)], dim=1)
    targets = tokens.roll(-1, dims=1)
    mask = torch.zeros(P, L, dtype=torch.bool)
    mask[:, h:L - 1] = True
    mask[:, h:] &= order != h - 1  # after b_{h-1} the block wraps: not an induction target
    return Sequences(tokens, targets, mask)
