"""Margins and support tokens of any Hugging Face causal LM, from its real queries and keys.

The map of layer l is the paper's per-head strict map ``e^h_t = u_t - sum_{s<t} a^h_ts u_s`` on
the attention layer's input ``u`` (what its projections read, after the input norm), with the
weights the model computes: ``a^h_ts = softmax_s(scale q^h_t . k^h_s)`` from the queries and keys
after rotary embeddings, key/value heads shared across their query group.

Rotary positions make the query a position-dependent linear map: ``q_t = R_t (W_Q u_t + b)``.
So ``dq_t/du_t = R_t W_Q`` and, by Sylvester's identity (docs/hf.md derives it),

    det J_t = det(I_p - R_t M_t),   M_t = scale sum_{s<t} a_ts (qhat_s - qhatbar_t)(k_s - kbar_t)^T

with ``qhat_s = R_s^{-1} q_s`` the query before rotation. Without rotary embeddings (GPT-2)
``R_t = I`` and this is the closed form probattn's GPT uses (:func:`probattn.studies.support_tokens.gpt_margins`).
``R_t`` is read off the model's own ``apply_rotary_pos_emb`` applied to the identity, so any
rotary variant (partial, scaled) that function implements is covered.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...studies.support_tokens.gpt import LayerMargins
from ...studies.support_tokens.moments import _outer_features, cov_from_means, strict_means, strict_weights_at
from .attention import (
    IMPLEMENTATION,
    attention_modules,
    materialised_mask,
    probattn_attention_forward,
    register_probattn_implementation,
    transformers_modules,
)

CAPTURE = "probattn_capture"


def _sdpa_forward():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward


def _capture_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Record the layer's (post-rotary) queries and keys, then attend as the model did."""
    record = getattr(module, "_probattn_record", None)
    if record is not None:
        keep = (lambda t: t.detach()) if record.get("detach", True) else (lambda t: t)
        record.update(q=keep(query), k=keep(key), scaling=scaling)
    probattn = getattr(module, "_probattn_delegate", None) == IMPLEMENTATION
    own = probattn_attention_forward if probattn else _sdpa_forward()
    return own(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def _register_capture() -> None:
    _, attention_interface, mask_interface, _ = transformers_modules()
    register_probattn_implementation()
    attention_interface.register(CAPTURE, _capture_forward)
    mask_interface.register(CAPTURE, materialised_mask)


@contextmanager
def capture_attention(model: nn.Module, detach: bool = True):
    """Within the block, each attention module's last call is recorded in ``module._probattn_record``:
    ``q``, ``k`` (B, H or H_kv, T, p), ``scaling``, ``hidden`` (its input u) and ``rotary``
    (``(cos, sin)`` or None)."""
    _register_capture()
    previous = model.config._attn_implementation
    modules = attention_modules(model)
    handles = []

    def pre_hook(module, args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        module._probattn_record.update(hidden=hidden.detach(), rotary=kwargs.get("position_embeddings"),
                                       mask=kwargs.get("attention_mask"))

    for m in modules:
        m._probattn_record = {"detach": detach}
        m._probattn_delegate = previous
        handles.append(m.register_forward_pre_hook(pre_hook, with_kwargs=True))
    model.set_attn_implementation(CAPTURE)
    try:
        yield modules
    finally:
        model.set_attn_implementation(previous)
        for h in handles:
            h.remove()
        for m in modules:
            del m._probattn_record, m._probattn_delegate


def rotation_matrices(module: nn.Module, rotary, head_dim: int, dtype=torch.float64) -> Tensor | None:
    """(B, T, p, p) matrices ``R_t`` with ``q_t = R_t qhat_t``, or None without rotary embeddings."""
    if rotary is None:
        return None
    apply = getattr(sys.modules[type(module).__module__], "apply_rotary_pos_emb", None)
    if apply is None:
        raise ConfigError(f"{type(module).__name__} takes position embeddings but its module has no "
                          "apply_rotary_pos_emb: margins need the per-position rotation")
    cos, sin = (t.to(dtype) for t in rotary)
    B, T = cos.shape[0], cos.shape[-2]
    basis = torch.eye(head_dim, dtype=dtype, device=cos.device)  # (p: basis vector j, p)
    basis = basis[None, :, None, :].expand(B, head_dim, T, head_dim)  # heads = basis vectors
    rotated = apply(basis, basis, cos, sin)[0]  # [b, j, t, :] = R_t e_j
    return rotated.permute(0, 2, 3, 1)  # [b, t, i, j] = (R_t)_ij


def layer_small_matrices(q: Tensor, k: Tensor, scale: float, rot: Tensor | None,
                         rows: Tensor | None = None, positions: Tensor | None = None) -> Tensor:
    """``I_p - R_t M_t`` (B, H, T, p, p) of the strict per-head map from post-rotary q, k
    (differentiable; ``det`` of it is ``det J_t``). ``rows`` (B',) and ``positions`` (B', n)
    restrict it to chosen sequences and query positions: (B', H, n, p, p), weights n x T."""
    if k.shape[1] != q.shape[1]:  # grouped key/value heads: each query head reads its group's key
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    rot = None if rot is None else rot.to(q.dtype)
    if rows is not None:
        q, k = q[rows], k[rows]
        if rot is not None and rot.shape[0] > 1:  # batch 1: positions shared by every sequence
            rot = rot[rows]
    # qhat_s = R_s^{-1} q_s; one inverse per position, shared by the heads
    qhat = q if rot is None else (torch.linalg.inv(rot)[:, None] @ q[..., None])[..., 0]
    # a per-sequence shift of qhat and k leaves M_t unchanged (weights sum to one) and keeps it accurate
    qc = qhat - qhat.mean(dim=2, keepdim=True).detach()
    kc = k - k.mean(dim=2, keepdim=True).detach()
    p = q.shape[-1]
    if positions is None:  # every position: one fused pass over the p^2 + 2p moment features
        m = cov_from_means(strict_means(q, k, _outer_features(qc, kc), scale), p, scale)  # weights: real scores
    else:  # n positions: weights n x T, and sum_s w_s qc_s kc_s^T as one batched product
        w = strict_weights_at(q, k, positions, scale)  # (B, H, n, T)
        second = (w[..., None] * qc[:, :, None]).transpose(-1, -2) @ kc[:, :, None]  # (B, H, n, p, p)
        qbar, kbar = w @ qc, w @ kc
        m = scale * (second - qbar[..., :, None] * kbar[..., None, :])
        if rot is not None:  # R_t at the chosen positions
            rot = torch.gather(rot.expand(positions.shape[0], -1, -1, -1), 1,
                               positions[:, :, None, None].expand(-1, -1, p, p))
    eye = torch.eye(p, dtype=m.dtype, device=m.device)
    return eye - (m if rot is None else rot[:, None] @ m)


def layer_logdets(q: Tensor, k: Tensor, scale: float, rot: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(sign, log|det J_t|)`` (B, H, T) in float64."""
    rot = None if rot is None else rot.double()
    return torch.linalg.slogdet(layer_small_matrices(q.double(), k.double(), scale, rot))


def record_rotation(module: nn.Module, record: dict) -> Tensor | None:
    return rotation_matrices(module, record["rotary"], record["q"].shape[-1])


def record_scale(record: dict) -> float:
    return float(record["scaling"] if record["scaling"] is not None else record["q"].shape[-1] ** -0.5)


@torch.no_grad()
def hf_margins(model: nn.Module, input_ids: Tensor) -> LayerMargins:
    """Per-layer, per-head margins (L, B, H, T) of an HF causal LM on unpadded ``input_ids`` (B, T)."""
    was_training = model.training
    model.eval()
    try:
        with capture_attention(model) as modules:
            model(input_ids, use_cache=False)
            signs, logs = [], []
            for m in modules:
                rec = m._probattn_record
                if "q" not in rec:
                    raise ConfigError(f"{type(m).__name__} (layer {m.layer_idx}) did not call the attention "
                                      "interface: its queries and keys cannot be read")
                sign, logabs = layer_logdets(rec["q"], rec["k"], record_scale(rec), record_rotation(m, rec))
                signs.append(sign)
                logs.append(logabs)
    finally:
        model.train(was_training)
    return LayerMargins(torch.stack(signs), torch.stack(logs), "strict", False)


def context_length(model: nn.Module) -> int:
    from .attention import text_config

    c = text_config(model.config)
    return int(getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", 1024))


def hf_text_margins(model: nn.Module, tokenizer, text: str, slide: bool = False, delta: float | None = None,
                    block: int | None = None):
    """:class:`probattn.studies.support_tokens.support.TextMargins` of ``text`` under an HF model (strict map, layers).

    Scored in windows as for probattn runs (:func:`probattn.studies.support_tokens.support.text_margins`) when the
    text is longer than ``block`` (default: the model's context) and ``slide`` is set.
    """
    from ...errors import DataError
    from ...studies.support_tokens.prior import FIRST_INFORMATIVE
    from ...studies.support_tokens.smooth import DEFAULT_DELTA
    from ...studies.support_tokens.support import TextMargins, window_starts

    if not text:
        raise DataError("the text is empty: nothing to score")
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    n = ids.numel()
    if n < 3:
        raise DataError(f"the text has {n} token(s): margins need at least three (a position and two earlier tokens)")
    block = block or context_length(model)
    if n > block and not slide:
        raise DataError(f"the text has {n} tokens but the context is {block}; pass --slide to score it in windows "
                        f"of {block} with stride {block // 2}, or shorten it")
    delta = DEFAULT_DELTA if delta is None else delta
    device = next(model.parameters()).device
    starts = window_starts(n, block) if n > block else [0]
    per_layer = None
    for i, start in enumerate(starts):
        window = ids[start:start + block].to(device)
        chunk = hf_margins(model, window[None]).margins(delta)[:, 0].cpu()  # (L, H, T)
        if per_layer is None:
            per_layer = torch.full((chunk.shape[0], chunk.shape[1], n), float("nan"), dtype=chunk.dtype)
        lo = 0 if i == 0 else starts[i - 1] + block  # a position takes the first window that holds it
        hi = min(start + block, n)
        if hi > lo:
            per_layer[:, :, lo:hi] = chunk[:, :, lo - start:hi - start]
    per_layer[:, :, :FIRST_INFORMATIVE] = float("nan")  # J_0 = J_1 = I for every text
    flat = per_layer.amin(dim=1)
    margins = flat.amin(dim=0)
    argmin = torch.nan_to_num(flat, nan=float("inf")).argmin(dim=0)
    tokens = [tokenizer.decode([int(t)]) for t in ids]
    windows = [(s, min(s + block, n)) for s in starts]
    return TextMargins(text, tokens, margins, per_layer, argmin, "layers", "strict", False, windows)
