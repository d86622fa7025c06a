"""Pure-attention stacks: attention layers composed with no residual, MLP or normalisation.

This is the setting of Dong et al.'s rank-collapse bound (and the paper's analysis): each layer
maps ``X -> Attn(X) W_O``. A stack is built either from fresh layers of any registered
mechanism (``random_attention_stack``) or from a trained model's own attention sublayers
(``model_attention_stack``); ``stack_states`` runs it and returns every layer's output.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..model import GPT, GPTConfig
from ..model.gpt import CausalSelfAttention
from .rank import layer_summary


def random_attention_stack(attention: str, n_layer: int, n_head: int, d_model: int,
                           options: dict | None = None, block_size: int = 1024, seed: int = 0,
                           init_std: float | None = None) -> nn.ModuleList:
    """``n_layer`` attention sublayers (qkv projection, mechanism, output projection) of the
    registered ``attention`` with weights drawn N(0, init_std^2), by default ``1/sqrt(d_model)``
    (unit-variance queries and keys for unit-variance tokens: scores of order one)."""
    config = GPTConfig(vocab_size=1, block_size=block_size, n_layer=n_layer, n_head=n_head,
                       n_embd=d_model, attention=attention, attention_options=dict(options or {}))
    std = init_std if init_std is not None else 1.0 / math.sqrt(d_model)
    torch.manual_seed(seed)
    layers = nn.ModuleList(CausalSelfAttention(config, i) for i in range(n_layer))
    with torch.no_grad():
        for layer in layers:
            for linear in (layer.c_attn, layer.c_proj):
                linear.weight.normal_(0.0, std)
                if linear.bias is not None:
                    linear.bias.zero_()
    return layers.eval()


def model_attention_stack(model: GPT) -> nn.ModuleList:
    """The model's own attention sublayers, in order (shared, not copied)."""
    return nn.ModuleList(block.attn for block in model.blocks)


@torch.no_grad()
def stack_states(layers: nn.ModuleList, x: Tensor) -> list[Tensor]:
    """``[X_0, X_1, ..., X_L]`` with ``X_{l+1} = layer_l(X_l)`` (eval mode, no dropout)."""
    states = [x]
    modes = [layer.training for layer in layers]
    for layer in layers:
        layer.eval()
    try:
        for layer in layers:
            states.append(layer(states[-1]))
    finally:
        for layer, mode in zip(layers, modes):
            layer.train(mode)
    return states


def stack_profile(layers: nn.ModuleList, x: Tensor) -> dict[str, list[float]]:
    """Rank collapse and token cosine after each layer of a pure-attention stack (0 = input)."""
    return layer_summary(stack_states(layers, x))


def gaussian_tokens(batch: int, tokens: int, d_model: int, seed: int = 0) -> Tensor:
    """I.i.d. N(0, 1) token vectors: a full-rank input with no structure."""
    return torch.randn(batch, tokens, d_model, generator=torch.Generator().manual_seed(seed))
