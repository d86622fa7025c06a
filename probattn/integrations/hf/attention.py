"""probattn mechanisms as the attention of a Hugging Face ``transformers`` model.

Each attention module of the model gets its own mechanism as a submodule
(``<attention>.probattn_mechanism``), so mechanisms with parameters (gpam's W_Q- and lambda,
diff's lambdas and RMSNorm gain) are trained, saved and loaded with the model's own state dict.
The model is switched to the attention implementation ``"probattn"``, registered with
transformers' ``AttentionInterface``. The model keeps its own projections, rotary embeddings and
KV cache; grouped key/value heads are repeated.

Which keys a query may see is read from the boolean mask transformers builds, never from a
convention: the registered mask function always materialises the mask (SDPA's mask skipping
relies on ``is_causal``'s top-left alignment, which is wrong when a static cache holds more slots
than tokens). A mask that is plain causal over the filled keys runs the mechanism's fast path;
trailing key slots no query may see (a static cache's empty slots) are cut off; any other mask
(padding, sliding window) is handed to the mechanism as ``attn_mask``. No mask with fewer
queries than keys (and more than one query) is refused: the alignment would be a guess.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...attention import AttentionContext, build_attention, causal_mask
from ...errors import ConfigError, UnsupportedModel

IMPLEMENTATION = "probattn"
MECHANISM_ATTR = "probattn_mechanism"
#: key of the choice recorded in the model's config (saved in config.json by save_pretrained)
CONFIG_KEY = "probattn"


def transformers_modules():
    try:
        import transformers
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        raise ConfigError("the Hugging Face integration needs the 'hf' extra: pip install 'probattn[hf]'") from None
    return transformers, AttentionInterface, AttentionMaskInterface, sdpa_mask


def materialised_mask(*args, **kwargs):
    """transformers' boolean SDPA mask, never skipped (``None`` would mean: trust ``is_causal``)."""
    _, _, _, sdpa_mask = transformers_modules()
    kwargs["allow_is_causal_skip"] = False
    return sdpa_mask(*args, **kwargs)


def register_probattn_implementation() -> str:
    """Register the ``"probattn"`` attention implementation with transformers (idempotent)."""
    _, attention_interface, mask_interface, _ = transformers_modules()
    attention_interface.register(IMPLEMENTATION, probattn_attention_forward)
    mask_interface.register(IMPLEMENTATION, materialised_mask)
    return IMPLEMENTATION


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of a transformers model: those that carry a ``layer_idx``."""
    found = [m for m in model.modules()
             if type(m).__name__.endswith("Attention") and isinstance(getattr(m, "layer_idx", None), int)]
    if not found:
        raise UnsupportedModel(f"no attention modules with a layer_idx found in {type(model).__name__}: "
                               "the integration needs transformers' AttentionInterface models")
    return found


def text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def _check_architecture(model: nn.Module, config: Any) -> None:
    """Refuse, with the real reason, what the mechanisms cannot compute."""
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModel(f"{type(model).__name__} is an encoder-decoder model; probattn attention is "
                               "causal self-attention (decoder-only models)")
    for name in ("attn_logit_softcapping", "alibi"):
        if getattr(config, name, None):
            raise UnsupportedModel(f"{type(model).__name__} uses {name}, which probattn mechanisms do not compute")
    set_impl = getattr(model, "_can_set_attn_implementation", None)
    if callable(set_impl) and not set_impl():
        raise UnsupportedModel(f"{type(model).__name__} does not dispatch attention through transformers' "
                               "AttentionInterface, so its attention cannot be replaced")


def _json_options(options: dict[str, Any]) -> dict[str, Any]:
    for key, value in options.items():
        if not isinstance(value, (bool, int, float, str)) and value is not None:
            raise ConfigError(f"attention option {key}={value!r} must be a number, string or boolean "
                              "(it is saved in the model's config.json)")
    return dict(options)


def use_probattn_attention(model: nn.Module, attention: str = "softmax",
                           options: dict[str, Any] | None = None) -> nn.Module:
    """Give every attention layer of ``model`` a probattn mechanism and switch the model to it.

    The choice is recorded in ``model.config.probattn`` so ``save_pretrained`` keeps it and
    :func:`probattn.integrations.hf.load_pretrained` rebuilds it.
    """
    transformers, *_ = transformers_modules()
    if not isinstance(model, transformers.PreTrainedModel):
        raise UnsupportedModel(f"use_probattn_attention needs a transformers model (a PreTrainedModel), got "
                               f"{type(model).__module__}.{type(model).__qualname__}; a probattn GPT takes its "
                               "mechanism from GPTConfig(attention=...)")
    register_probattn_implementation()
    config = text_config(model.config)
    _check_architecture(model, config)
    options = _json_options(dict(options or {}))
    n_head = config.num_attention_heads
    n_layer = config.num_hidden_layers
    hidden = config.hidden_size
    block = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 1024)
    dropout = float(getattr(config, "attention_dropout", getattr(config, "attn_pdrop", 0.0)) or 0.0)
    ref = next(model.parameters())
    for module in attention_modules(model):
        if getattr(module, "is_causal", True) is False:
            raise UnsupportedModel(f"{type(module).__name__} (layer {module.layer_idx}) is not causal; "
                                   "probattn attention is causal self-attention")
        head_dim = int(getattr(module, "head_dim", hidden // n_head))
        ctx = AttentionContext(n_head=n_head, head_dim=head_dim, layer_idx=module.layer_idx,
                               n_layer=n_layer, block_size=block, dropout=dropout, options=options)
        mechanism = build_attention(attention, ctx).to(device=ref.device, dtype=ref.dtype)
        mechanism.train(module.training)  # later model.train() / eval() calls reach it as a child
        module.add_module(MECHANISM_ATTR, mechanism)
    set_impl = getattr(model, "set_attn_implementation", None)
    if callable(set_impl):
        set_impl(IMPLEMENTATION)
    else:  # older transformers
        model.config._attn_implementation = IMPLEMENTATION
    setattr(model.config, CONFIG_KEY, {"attention": attention, "options": options})
    return model


# -- masks -------------------------------------------------------------------------------------

def allowed_from_mask(mask: Tensor) -> Tensor:
    """Boolean "may attend" from transformers' boolean or additive (0 / very negative) masks."""
    if mask.dtype == torch.bool:
        return mask
    lowest = torch.finfo(mask.dtype).min
    allowed = mask == 0
    if not bool(((mask == 0) | (mask <= lowest / 2) | torch.isneginf(mask)).all()):
        raise ConfigError("the model adds a bias to the attention scores (an additive mask with values other "
                          "than 0 and -inf); probattn mechanisms take boolean masks only")
    return allowed


def resolve_mask(mask: Tensor | None, t_q: int, t_k: int) -> tuple[int, Tensor | None]:
    """``(n_keys, allowed)``: how many leading keys to keep, and a mask to pass (None: causal).

    Keys are aligned to positions by transformers' mask; the mechanisms' own causal mask aligns the
    queries to the end of the keys, which is right only when no mask says otherwise.
    """
    if mask is None:
        if t_q == t_k or t_q == 1:
            return t_k, None
        raise ConfigError(f"transformers passed no attention mask for {t_q} queries over {t_k} keys: which keys "
                          "each query may see is ambiguous (SDPA aligns is_causal top-left), so probattn refuses "
                          "to guess; build the model with the 'probattn' implementation's masks")
    allowed = allowed_from_mask(mask)
    if allowed.shape[-1] != t_k:
        allowed = allowed[..., :t_k]
    seen = allowed.flatten(0, -2).any(0)  # (t_k,): keys some query may see
    n = int(torch.nonzero(seen).max()) + 1 if bool(seen.any()) else t_k
    allowed = allowed[..., :n]  # trailing slots nobody sees: a static cache's unfilled part
    if torch.equal(allowed, causal_mask(t_q, n, device=allowed.device).expand_as(allowed)):
        return n, None
    return n, allowed


_LAST: dict[str, Any] = {}


def _resolve_cached(mask: Tensor | None, t_q: int, t_k: int) -> tuple[int, Tensor | None]:
    """The same mask object reaches every layer of one forward: resolve it once."""
    if mask is None:
        return resolve_mask(None, t_q, t_k)
    key = (id(mask), mask._version, tuple(mask.shape), t_q, t_k)
    if _LAST.get("key") == key and _LAST.get("mask") is mask:
        return _LAST["value"]
    value = resolve_mask(mask, t_q, t_k)
    _LAST.update(key=key, mask=mask, value=value)
    return value


def weights_requested(kwargs: dict) -> bool:
    """``output_attentions`` reaches the attention function as a kwarg (Llama) or only as the
    output collector of the model's forward (GPT-2 consumes the argument itself)."""
    if kwargs.get("output_attentions") is not None:
        return bool(kwargs["output_attentions"])
    try:
        from transformers.utils.output_capturing import _active_collector
    except ImportError:
        return False
    try:
        return "attentions" in (_active_collector.get() or {})
    except LookupError:
        return False


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
        raise ConfigError(f"the model scales scores by {scaling:g}, probattn mechanisms by 1/sqrt(head_dim) "
                          f"= {mechanism.scale:g}")
    if kwargs.get("softcap") is not None or getattr(module, "sinks", None) is not None:
        raise ConfigError(f"{type(module).__name__} uses logit soft-capping or attention sinks, which probattn "
                          "mechanisms do not compute")
    t_q, t_k = query.shape[-2], key.shape[-2]
    n_keys, allowed = _resolve_cached(attention_mask, t_q, t_k)
    key, value = key[..., :n_keys, :], value[..., :n_keys, :]
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: every query head reads its group's key/value head
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    need = weights_requested(kwargs)
    if allowed is None:
        y, weights = mechanism(query, key, value, need_weights=need)
    else:  # transformers' mask already holds causality, padding and any window
        y, weights = mechanism(query, key, value, need_weights=need, causal=False, attn_mask=allowed)
    if weights is not None and weights.shape[-1] < t_k:  # report weights over every key slot
        weights = F.pad(weights, (0, t_k - weights.shape[-1]))
    return y.transpose(1, 2).contiguous(), weights
