"""Use probattn's attention mechanisms inside Hugging Face ``transformers`` models.

    from transformers import AutoModelForCausalLM
    from probattn.integrations.hf import use_probattn_attention

    model = AutoModelForCausalLM.from_pretrained("...")
    use_probattn_attention(model, "gpam", {"trainable": True})   # every attention layer
    model(**batch).loss.backward()                                # W_Q- and lambda train with it

Each attention module of the model gets its own mechanism as a submodule
(``<attention>.probattn_mechanism``), so mechanisms with parameters (gpam's W_Q- and lambda,
diff's lambdas and RMSNorm gain) are trained, saved and loaded with the model's own state dict.
The model is switched to the attention implementation ``"probattn"``, registered with
transformers' ``AttentionInterface`` (masks built as for SDPA). The model keeps its own
projections, rotary embeddings and KV cache; grouped key/value heads are repeated.

Limits, checked at run time with a clear error: causal self-attention only (no padding in the
batch, no bidirectional or cross attention), and the mechanism's 1/sqrt(head_dim) scaling.
Needs the ``hf`` extra: ``pip install 'probattn[hf]'``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..attention import AttentionContext, build_attention, causal_mask
from ..errors import ConfigError

IMPLEMENTATION = "probattn"
MECHANISM_ATTR = "probattn_mechanism"


def _transformers():
    try:
        import transformers
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        raise ConfigError("the Hugging Face integration needs the 'hf' extra: pip install 'probattn[hf]'") from None
    return transformers, AttentionInterface, AttentionMaskInterface, sdpa_mask


def register_probattn_implementation() -> str:
    """Register the ``"probattn"`` attention implementation with transformers (idempotent)."""
    _, attention_interface, mask_interface, sdpa_mask = _transformers()
    attention_interface.register(IMPLEMENTATION, probattn_attention_forward)
    mask_interface.register(IMPLEMENTATION, sdpa_mask)
    return IMPLEMENTATION


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of a transformers model: those that carry a ``layer_idx``."""
    found = [m for m in model.modules()
             if type(m).__name__.endswith("Attention") and isinstance(getattr(m, "layer_idx", None), int)]
    if not found:
        raise ConfigError(f"no attention modules with a layer_idx found in {type(model).__name__}")
    return found


def _text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def use_probattn_attention(model: nn.Module, attention: str = "softmax",
                           options: dict[str, Any] | None = None) -> nn.Module:
    """Give every attention layer of ``model`` a probattn mechanism and switch the model to it."""
    register_probattn_implementation()
    config = _text_config(model.config)
    n_head = config.num_attention_heads
    n_layer = config.num_hidden_layers
    hidden = config.hidden_size
    block = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 1024)
    dropout = float(getattr(config, "attention_dropout", getattr(config, "attn_pdrop", 0.0)) or 0.0)
    ref = next(model.parameters())
    for module in attention_modules(model):
        head_dim = int(getattr(module, "head_dim", hidden // n_head))
        ctx = AttentionContext(n_head=n_head, head_dim=head_dim, layer_idx=module.layer_idx,
                               n_layer=n_layer, block_size=block, dropout=dropout,
                               options=dict(options or {}))
        mechanism = build_attention(attention, ctx).to(device=ref.device, dtype=ref.dtype)
        mechanism.train(module.training)  # later model.train() / eval() calls reach it as a child
        module.add_module(MECHANISM_ATTR, mechanism)
    set_impl = getattr(model, "set_attn_implementation", None)
    if callable(set_impl):
        set_impl(IMPLEMENTATION)
    else:  # older transformers
        model.config._attn_implementation = IMPLEMENTATION
    return model


def _check_causal_mask(mask: Tensor | None, t_q: int, t_k: int) -> None:
    """Refuse masks other than plain causal ones: the mechanisms know no padding."""
    if mask is None:
        return
    allowed = mask if mask.dtype == torch.bool else mask == 0
    expected = causal_mask(t_q, t_k, device=mask.device)
    if allowed.shape[-2:] != expected.shape or not torch.equal(allowed, expected.expand_as(allowed)):
        raise ConfigError("probattn attention is causal and knows no padding: pass unpadded batches "
                          "(equal lengths, attention_mask all ones)")


def probattn_attention_forward(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                               attention_mask: Tensor | None, dropout: float = 0.0,
                               scaling: float | None = None, **kwargs) -> tuple[Tensor, Tensor | None]:
    """The function transformers calls: (B, H, T, D) inputs, (B, T, H, D) output."""
    mechanism = getattr(module, MECHANISM_ATTR, None)
    if mechanism is None:
        raise ConfigError("this model has no probattn mechanisms: call use_probattn_attention(model, ...) first")
    if getattr(module, "is_causal", True) is False:
        raise ConfigError(f"{type(module).__name__} is not causal; probattn attention is causal only")
    if scaling is not None and not math.isclose(scaling, mechanism.scale, rel_tol=1e-6):
        raise ConfigError(f"the model scales scores by {scaling:g}, probattn mechanisms by 1/sqrt(head_dim)")
    _check_causal_mask(attention_mask, query.shape[-2], key.shape[-2])
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: every query head reads its group's key/value head
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    y, weights = mechanism(query, key, value, need_weights=bool(kwargs.get("output_attentions", False)))
    return y.transpose(1, 2).contiguous(), weights
