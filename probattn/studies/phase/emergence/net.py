"""Small transformers as practitioners train them: learned token and position embeddings,
multi-head causal attention (softmax or linear), an optional MLP, an unembedding, no LayerNorm.

Attention is materialised (L is at most a few dozen here) so every layer's pattern
``(batch, head, query, key)`` comes back with the logits, in TransformerLens's layout. Linear
attention is the registry's ``linear`` mechanism written out: ``a_ts = q_t . k_s / sqrt(d_head)``
for s <= t, 0 above the diagonal, used unnormalised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ....errors import ConfigError

KINDS = ("softmax", "linear")
#: model name -> (layers, MLP after each attention layer)
MODELS = {"attn1": (1, False), "attn2": (2, False), "mlp1": (1, True), "mlp2": (2, True)}
INIT_STD = 0.02  # nanoGPT's normal init for every weight


@dataclass(frozen=True)
class NetConfig:
    V: int
    L: int
    model: str = "attn1"
    kind: str = "softmax"
    d_model: int = 32
    n_head: int = 2

    def __post_init__(self):
        if self.model not in MODELS:
            raise ConfigError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.kind not in KINDS:
            raise ConfigError(f"attention kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.d_model % self.n_head:
            raise ConfigError(f"d_model {self.d_model} is not a multiple of n_head {self.n_head}")

    @property
    def n_layer(self) -> int:
        return MODELS[self.model][0]

    @property
    def mlp(self) -> bool:
        return MODELS[self.model][1]


def attention_pattern(q: Tensor, k: Tensor, kind: str) -> Tensor:
    """(B, H, T, T) causal pattern from q, k of shape (B, H, T, d_head)."""
    T = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    if kind == "softmax":
        return scores.masked_fill(future, float("-inf")).softmax(-1)
    return scores.masked_fill(future, 0.0)


class Layer(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                 nn.Linear(4 * cfg.d_model, cfg.d_model)) if cfg.mlp else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        B, T, D = x.shape
        H = self.cfg.n_head
        q, k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in self.qkv(x).split(D, dim=-1))
        pattern = attention_pattern(q, k, self.cfg.kind)
        x = x + self.out((pattern @ v).transpose(1, 2).reshape(B, T, D))
        if self.mlp is not None:
            x = x + self.mlp(x)
        return x, pattern


class TinyTransformer(nn.Module):
    def __init__(self, cfg: NetConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.V, cfg.d_model)
        self.wpe = nn.Embedding(cfg.L, cfg.d_model)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.n_layer))
        self.unembed = nn.Linear(cfg.d_model, cfg.V, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, INIT_STD, generator=generator)
                else:
                    p.zero_()

    def forward(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits (B, T, V) and the attention pattern of every layer, (B, H, T, T) each."""
        T = tokens.shape[1]
        x = self.wte(tokens) + self.wpe(torch.arange(T, device=tokens.device))
        patterns = []
        for layer in self.layers:
            x, pattern = layer(x)
            patterns.append(pattern)
        return self.unembed(x), patterns
