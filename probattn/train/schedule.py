"""Learning-rate schedule: linear warmup then cosine decay to ``min_lr`` (nanoGPT's)."""

import math


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    if step > decay_steps:
        return min_lr
    span = max(decay_steps - warmup_steps, 1)
    ratio = (step - warmup_steps) / span
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)
