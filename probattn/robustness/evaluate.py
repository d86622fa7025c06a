"""Clean vs perturbed evaluation: loss, bits per character, accuracy, absolute and relative change.

All conditions use the same windows of the evaluation stream: ``n`` windows starting every
``block_size`` tokens (deletion reads up to ``2 * block_size + 1`` tokens from the same start, so
enough survive). Each condition has its own seeded generator, so a run is deterministic and one
condition does not shift the random draws of another.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from .perturb import TOKEN_KINDS, gaussian_embedding_noise, perturb_window

NOISE = "embedding_noise"


@dataclass(frozen=True)
class RobustnessConfig:
    #: Gaussian noise on the input embeddings, in units of the clean embedding RMS
    sigmas: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    #: token perturbation rates
    rates: tuple[float, ...] = (0.02, 0.05, 0.1)
    kinds: tuple[str, ...] = TOKEN_KINDS
    max_tokens: int = 20_000
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        if any(not s > 0 for s in self.sigmas):
            raise ConfigError(f"noise levels must be positive, got {self.sigmas}")
        if any(not 0 < r < 1 for r in self.rates):
            raise ConfigError(f"perturbation rates must be in (0, 1), got {self.rates}")
        unknown = set(self.kinds) - set(TOKEN_KINDS)
        if unknown:
            raise ConfigError(f"unknown perturbation(s) {sorted(unknown)}; available: {', '.join(TOKEN_KINDS)}")
        if self.max_tokens <= 0 or self.batch_size <= 0:
            raise ConfigError("max_tokens and batch_size must be positive")


@dataclass
class Scores:
    loss: float
    bits_per_char: float
    acc: float
    tokens: int


@dataclass
class Condition:
    kind: str
    level: float
    scores: Scores
    change: dict[str, float] = field(default_factory=dict)


def window_starts(n_tokens: int, block: int, max_tokens: int) -> list[int]:
    span = 2 * block + 1
    if n_tokens < span:
        raise DataError(f"the evaluation text has {n_tokens} tokens; robustness evaluation needs at least "
                        f"{span} (two contexts of {block} plus one)")
    starts = list(range(0, n_tokens - span + 1, block))
    return starts[: max(1, max_tokens // block)]


@torch.no_grad()
def score(model, pairs: list[tuple[Tensor, Tensor]], batch_size: int, device, embed_fn=None) -> Scores:
    total, correct, count = 0.0, 0, 0
    for i in range(0, len(pairs), batch_size):
        x = torch.stack([p[0] for p in pairs[i : i + batch_size]]).to(device)
        y = torch.stack([p[1] for p in pairs[i : i + batch_size]]).to(device)
        logits = model(x)[0] if embed_fn is None else model.forward_embeddings(embed_fn(x))
        flat = logits.reshape(-1, logits.shape[-1]).float()
        total += float(F.cross_entropy(flat, y.reshape(-1), reduction="sum"))
        correct += int((flat.argmax(-1) == y.reshape(-1)).sum())
        count += y.numel()
    loss = total / count
    return Scores(loss, loss / math.log(2), correct / count, count)


def change(clean: Scores, perturbed: Scores) -> dict[str, float]:
    out = {}
    for key in ("loss", "bits_per_char", "acc"):
        a, b = getattr(clean, key), getattr(perturbed, key)
        out[f"delta_{key}"] = b - a
        out[f"rel_{key}"] = (b - a) / a if a else math.nan
    return out


@torch.no_grad()
def embedding_rms(model, pairs, batch_size: int, device) -> float:
    sq, n = 0.0, 0
    for i in range(0, len(pairs), batch_size):
        x = torch.stack([p[0] for p in pairs[i : i + batch_size]]).to(device)
        emb = model.embed(x).float()
        sq += float((emb**2).sum())
        n += emb.numel()
    return math.sqrt(sq / n)


def evaluate_robustness(model, tokens: Tensor, config: RobustnessConfig = RobustnessConfig(),
                        device="cpu") -> dict:
    """Clean and perturbed scores of ``model`` on a token stream; a JSON-ready dict."""
    model.eval()
    T = model.config.block_size
    V = model.config.vocab_size
    starts = window_starts(tokens.numel(), T, config.max_tokens)
    windows = [tokens[s : s + 2 * T + 1] for s in starts]
    clean_pairs = [(w[:T], w[1 : T + 1]) for w in windows]
    clean = score(model, clean_pairs, config.batch_size, device)
    rms = embedding_rms(model, clean_pairs, config.batch_size, device)
    conditions: list[Condition] = []
    for i, sigma in enumerate(config.sigmas):
        g = torch.Generator().manual_seed(config.seed * 7919 + i)

        def noisy(x, s=sigma, g=g):
            return gaussian_embedding_noise(model.embed(x), s, rms, g)

        conditions.append(Condition(NOISE, sigma, score(model, clean_pairs, config.batch_size, device, noisy)))
    for j, (kind, rate) in enumerate((k, r) for k in config.kinds for r in config.rates):
        g = torch.Generator().manual_seed(config.seed * 7919 + 1000 + j)
        pairs = []
        for w in windows:
            pair = perturb_window(kind, w, rate, T, V, g)
            if pair is not None:
                pairs.append(pair)
        if not pairs:
            raise DataError(f"{kind} at rate {rate} left no window with {T} tokens")
        conditions.append(Condition(kind, rate, score(model, pairs, config.batch_size, device)))
    for c in conditions:
        c.change = change(clean, c.scores)
    return {
        "config": asdict(config),
        "windows": len(windows),
        # which tokens the clean loss covers: the first ``clean_tokens`` targets of the split, in
        # windows of block_size from its start (``probattn eval --max-tokens`` that many scores them too)
        "clean_tokens": clean.tokens, "split_tokens": int(tokens.numel()), "block_size": T,
        "embedding_rms": rms,
        "clean": asdict(clean),
        "conditions": [{"kind": c.kind, "level": c.level, **asdict(c.scores), **c.change} for c in conditions],
    }


def format_table(result: dict) -> str:
    def label(r):
        return f"{r['kind']} {r['level']:g}" + (" x rms" if r["kind"] == NOISE else "")

    c = result["clean"]
    w = max([len("condition")] + [len(label(r)) for r in result["conditions"]])
    lines = [f"{'condition':<{w}} {'loss':>8} {'bits/char':>9} {'acc':>7} {'d loss':>8} {'rel loss':>9} {'d acc':>8}",
             f"{'clean':<{w}} {c['loss']:>8.4f} {c['bits_per_char']:>9.4f} {c['acc']:>7.4f}"]
    for r in result["conditions"]:
        lines.append(f"{label(r):<{w}} {r['loss']:>8.4f} {r['bits_per_char']:>9.4f} {r['acc']:>7.4f} "
                     f"{r['delta_loss']:>+8.4f} {100 * r['rel_loss']:>+8.2f}% {r['delta_acc']:>+8.4f}")
    lines.append(f"{result['windows']} windows, embedding RMS {result['embedding_rms']:.4f}, "
                 f"seed {result['config']['seed']}")
    if "clean_tokens" in result:
        lines.append(f"clean loss over the first {result['clean_tokens']:,} of {result['split_tokens']:,} tokens "
                     f"({result['windows']} windows of {result['block_size']} from the start; "
                     f"`probattn eval --max-tokens {result['clean_tokens']}` scores the same tokens)")
    return "\n".join(lines)
