"""Batches of (input, next-token target) windows from a 1-D token stream."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ..errors import DataError


def check_long_enough(tokens: Tensor, block_size: int, what: str) -> None:
    if tokens.numel() <= block_size:
        raise DataError(
            f"the {what} split has {tokens.numel()} tokens but the context (block_size) is "
            f"{block_size}; use a shorter --block-size or more text"
        )


def _windows(tokens: Tensor, starts: Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    offsets = starts[:, None] + torch.arange(block_size + 1)
    chunk = tokens[offsets]
    return chunk[:, :-1], chunk[:, 1:]


class RandomWindows:
    """Random training windows, reproducible and resumable.

    One seeded generator draws the *global* batch (``batch_size * world_size`` windows) every
    call; each data-parallel rank keeps its own slice. So N processes see exactly the windows one
    process with an N-times larger batch would see, and the generator state is all a checkpoint
    needs to continue the sequence.
    """

    def __init__(self, tokens: Tensor, block_size: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        check_long_enough(tokens, block_size, "training")
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> tuple[Tensor, Tensor]:
        n_start = self.tokens.numel() - self.block_size
        starts = torch.randint(n_start, (self.batch_size * self.world_size,), generator=self.generator)
        mine = starts[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return _windows(self.tokens, mine, self.block_size)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def fixed_eval_batches(tokens: Tensor, block_size: int, batch_size: int, n_batches: int,
                       seed: int = 1234, rank: int = 0, world_size: int = 1
                       ) -> list[tuple[Tensor, Tensor]]:
    """The same ``n_batches`` windows at every evaluation, so losses are comparable over time."""
    check_long_enough(tokens, block_size, "validation")
    draw = RandomWindows(tokens, block_size, batch_size, seed, rank, world_size)
    return [draw.next() for _ in range(n_batches)]


def sequential_windows(tokens: Tensor, block_size: int, batch_size: int,
                       max_tokens: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Non-overlapping windows covering the stream (each target predicted once)."""
    if tokens.numel() < 2:
        raise DataError("need at least two tokens to evaluate next-token prediction")
    n_targets = tokens.numel() - 1
    if max_tokens is not None:
        n_targets = min(n_targets, max_tokens)
    full = n_targets // block_size
    starts = torch.arange(full) * block_size
    for i in range(0, full, batch_size):
        yield _windows(tokens, starts[i : i + batch_size], block_size)
    rest = n_targets - full * block_size
    if rest > 0:
        s = full * block_size
        yield tokens[None, s : s + rest], tokens[None, s + 1 : s + rest + 1]
