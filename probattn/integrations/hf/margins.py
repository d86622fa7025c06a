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


def rotate_back(q: Tensor, rot_inv: Tensor) -> Tensor:
    """``qhat_t = R_t^{-1} q_t`` for q (B, H, T, p) and ``rot_inv`` (1 or B, T, p, p): one batched
    product per position (the inverse is never copied per head)."""
    B, H, T, p = q.shape
    if rot_inv.shape[0] == 1:  # positions shared by every sequence: (T, p, p) @ (T, p, B*H)
        out = rot_inv[0] @ q.permute(2, 3, 0, 1).reshape(T, p, B * H)
        return out.view(T, p, B, H).permute(2, 3, 0, 1)
    out = rot_inv @ q.permute(0, 2, 3, 1)  # (B, T, p, p) @ (B, T, p, H)
    return out.permute(0, 3, 1, 2)


def layer_small_matrices(q: Tensor, k: Tensor, scale: float, rot: Tensor | None,
                         rows: Tensor | None = None, positions: Tensor | None = None,
                         rot_inv: Tensor | None = None, same_det: bool = False) -> Tensor:
    """``I_p - R_t M_t`` (B, H, T, p, p) of the strict per-head map from post-rotary q, k
    (differentiable; ``det`` of it is ``det J_t``). ``rows`` (B',) and ``positions`` (B', n)
    restrict it to chosen sequences and query positions: (B', H, n, p, p), weights n x T.
    ``rot_inv``: ``R_t^{-1}`` when the caller has it (shared by every layer of one forward).
    ``same_det``: return a matrix with the same determinant that skips the p x p product ``R_t M_t``
    per head (:func:`_rotated_small`); what the barrier needs, which reads only the determinant."""
    if k.shape[1] != q.shape[1]:  # grouped key/value heads: each query head reads its group's key
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    if rot is not None:
        rot = rot.to(q.dtype)
        rot_inv = torch.linalg.inv(rot) if rot_inv is None else rot_inv.to(q.dtype)
    if rows is not None:
        q, k = q[rows], k[rows]
        if rot is not None and rot.shape[0] > 1:  # batch 1: positions shared by every sequence
            rot, rot_inv = rot[rows], rot_inv[rows]
    # qhat_s = R_s^{-1} q_s; one inverse per position, shared by the heads (and the layers)
    qhat = q if rot is None else rotate_back(q, rot_inv)
    # a per-sequence shift of qhat and k leaves M_t unchanged (weights sum to one) and keeps it accurate
    qc = qhat - qhat.mean(dim=2, keepdim=True).detach()
    kc = k - k.mean(dim=2, keepdim=True).detach()
    B, H, T, p = q.shape
    if positions is None:  # every position: one fused pass over the p^2 + 2p moment features
        m = cov_from_means(strict_means(q, k, _outer_features(qc, kc), scale), p, scale)  # weights: real scores
    else:  # n positions: weights n x T; sum_s w_s qc_s kc_s^T as one (n p x T) @ (T x p) product per head
        w = strict_weights_at(q, k, positions, scale)  # (B, H, n, T)
        n = w.shape[2]
        weighted = qc.transpose(-1, -2)[:, :, None] * w[:, :, :, None, :]  # (B, H, n, p, T)
        second = (weighted.reshape(B, H, n * p, T) @ kc).view(B, H, n, p, p)
        qbar, kbar = w @ qc, w @ kc
        m = scale * (second - qbar[..., :, None] * kbar[..., None, :])
    eye = torch.eye(p, dtype=m.dtype, device=m.device)
    if rot is None:
        return eye - m
    if positions is not None:  # R_t (and R_t^{-1}) at the chosen positions
        index = positions[:, :, None, None].expand(-1, -1, p, p)
        rot = torch.gather(rot.expand(positions.shape[0], -1, -1, -1), 1, index)
        rot_inv = torch.gather(rot_inv.expand(positions.shape[0], -1, -1, -1), 1, index)
    if same_det:
        return _rotated_small(rot_inv, torch.linalg.det(rot), m)
    return eye - rot[:, None] @ m


def _rotated_small(rot_inv: Tensor, rot_det: Tensor, m: Tensor) -> Tensor:
    """A matrix with the determinant of ``I - R_t M_t`` without the p x p product per head:
    ``det(I - R M) = det R det(R^{-1} - M)``, and ``det R`` goes into the first row (for a rotation,
    ``det R = 1``). ``rot_inv`` (B', n, p, p), ``rot_det`` (B', n), ``m`` (B', H, n, p, p)."""
    small = rot_inv[:, None] - m
    first = small[..., :1, :] * rot_det[:, None, :, None, None].to(small.dtype)
    return torch.cat([first, small[..., 1:, :]], dim=-2)


def layer_logdets(q: Tensor, k: Tensor, scale: float, rot: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(sign, log|det J_t|)`` (B, H, T) in float64: the readable reference of :func:`fast_layer_logdets`."""
    rot = None if rot is None else rot.double()
    return torch.linalg.slogdet(layer_small_matrices(q.double(), k.double(), scale, rot))


#: bound on the float32 moment features of one chunk of heads in :func:`fast_layer_logdets`
CHUNK_BYTES = 256 * 2**20


@torch.no_grad()
def fast_layer_logdets(q: Tensor, k: Tensor, scale: float, rotation: Rotation | None = None,
                       chunk_bytes: int = CHUNK_BYTES) -> tuple[Tensor, Tensor]:
    """``(sign, log|det J_t|)`` (B, H, T), float64, as :func:`layer_logdets` but fast (no autograd).

    The moments, ``M_t = scale sum_{s<t} a_ts qc_s kc_s^T - ...``, are one float32 product of the
    strict weights (T x T per head) with the p^2 outer-product features per chunk of heads (the
    arithmetic of the closed form, done by BLAS). The rotation never meets ``M_t``:
    ``det(I - R_t M_t) = det(R_t) det(R_t^{-1} - M_t)``, with ``det R_t`` once per position (float64).
    The p x p determinants are float32 LU factorisations too: the matrices carry the float32
    moments' rounding already, which a float64 factorisation would not remove; the result agrees
    with the float64 reference to float32 accuracy (tests/test_hf_margins.py), and is returned in
    float64.
    """
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    q, k = q.float(), k.float()
    B, H, T, p = q.shape
    qhat = q if rotation is None else rotate_back(q, rotation.inverse.float())
    qc = scale * (qhat - qhat.mean(dim=2, keepdim=True))  # the scale rides on the small side
    kc = k - k.mean(dim=2, keepdim=True)
    strict = torch.ones(T, T, dtype=torch.bool, device=q.device).tril(-1)  # s < t
    rot_inv = None if rotation is None else rotation.inverse[:, None].float()  # (1 or B, 1, T, p, p)
    signs, logs = [], []
    per_head = B * T * (p * p + T) * 4 * 2
    step = max(1, min(H, chunk_bytes // per_head))
    for h in range(0, H, step):
        qh, kh, qch, kch = (t[:, h:h + step] for t in (q, k, qc, kc))
        scores = (scale * qh @ kh.transpose(-1, -2)).masked_fill(~strict, float("-inf"))
        a = torch.softmax(scores, dim=-1).nan_to_num_(0.0)  # row t = 0 has no past: zero weights
        feats = (qch[..., :, None] * kch[..., None, :]).flatten(-2)  # (B, h, T, p^2)
        m = (a @ feats).unflatten(-1, (p, p))
        m.sub_((a @ qch)[..., :, None] * (a @ kch)[..., None, :])  # minus qbar kbar^T, in place
        small = m.neg_()  # I - M (or R^{-1} - M), in place: no float64 copy of the big tensor
        if rot_inv is None:
            small.diagonal(dim1=-2, dim2=-1).add_(1.0)
        else:
            small.add_(rot_inv)
        sign, logabs = torch.linalg.slogdet(small)
        signs.append(sign.double())
        logs.append(logabs.double())
    sign, logabs = torch.cat(signs, dim=1), torch.cat(logs, dim=1)
    if rotation is not None:
        sign, logabs = sign * rotation.det_sign[:, None], logabs + rotation.det_logabs[:, None]
    return sign, logabs


class Rotation:
    """``R_t``, its inverse and ``det R_t`` (1 or B, T, ...) in float64: computed once per forward and
    shared by every layer (they all receive the same position embeddings)."""

    def __init__(self, matrices: Tensor):
        self.matrices = matrices
        self.inverse = torch.linalg.inv(matrices)
        self.det_sign, self.det_logabs = torch.linalg.slogdet(matrices)


class RotationCache:
    """One :class:`Rotation` per distinct position-embedding tensor seen during one forward."""

    def __init__(self):
        self._by_id: dict[int, tuple[Tensor, Rotation]] = {}

    def __call__(self, module: nn.Module, record: dict) -> Rotation | None:
        rotary = record["rotary"]
        if rotary is None:
            return None
        key = id(rotary[0])
        if key not in self._by_id:  # the tensor is kept with it, so its id cannot be reused meanwhile
            self._by_id[key] = (rotary[0], Rotation(record_rotation(module, record)))
        return self._by_id[key][1]


def record_rotation(module: nn.Module, record: dict) -> Tensor | None:
    return rotation_matrices(module, record["rotary"], record["q"].shape[-1])


def record_scale(record: dict) -> float:
    return float(record["scaling"] if record["scaling"] is not None else record["q"].shape[-1] ** -0.5)


@torch.no_grad()
def hf_margins(model: nn.Module, input_ids: Tensor, reference: bool = False) -> LayerMargins:
    """Per-layer, per-head margins (L, B, H, T) of an HF causal LM on unpadded ``input_ids`` (B, T):
    :func:`fast_layer_logdets`, or with ``reference`` the all-float64 :func:`layer_logdets`."""
    was_training = model.training
    model.eval()
    try:
        with capture_attention(model) as modules:
            # the attention layers are all it needs: the body without the output head, when it has one
            body = getattr(model, "base_model", model)
            body(input_ids, use_cache=False)
            signs, logs = [], []
            rotations = RotationCache()
            for m in modules:
                rec = m._probattn_record
                if "q" not in rec:
                    raise ConfigError(f"{type(m).__name__} (layer {m.layer_idx}) did not call the attention "
                                      "interface: its queries and keys cannot be read")
                if reference:
                    sign, logabs = layer_logdets(rec["q"], rec["k"], record_scale(rec), record_rotation(m, rec))
                else:
                    sign, logabs = fast_layer_logdets(rec["q"], rec["k"], record_scale(rec), rotations(m, rec))
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
