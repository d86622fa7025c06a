"""Margins of a GPT's own attention layers, read from its hook points.

Which input does a layer's map act on? The attention of block l sees ``u = ln_1(x)`` where ``x``
is the residual stream ``blocks.{l}.hook_resid_pre``: its queries, keys and values are linear in
that LayerNorm output. So the map of layer l is ``e_t = u_t - mu_t(u)`` with ``u = ln_1(x)``, and

* per head, no value map (the paper's form, what the ``layers`` penalty uses):
  ``W_Q^h, W_K^h`` = rows of ``c_attn`` for head h; margins need only ``hook_q`` and ``hook_k``;
* the whole layer with its value/output map ``V_h = W_O^h W_V^h`` (``c_proj`` columns of head h
  times ``c_attn``'s value rows): with the inclusive mask this is exactly the attention sublayer
  of the GPT (up to the constant output bias).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .attention_map import CausalAttentionMap
from .logdet import logdet_jacobian
from .moments import strict_cov
from .smooth import DEFAULT_DELTA, smooth_margin_from_det


def raw_model(model):
    """The GPT behind a ``torch.compile`` wrapper (hooks and attributes live there)."""
    return getattr(model, "_orig_mod", model)


def layer_map(model, layer: int, values: bool = False, mask: str = "strict",
              head: int | None = None) -> CausalAttentionMap:
    """The attention map of block ``layer`` (all heads, or one ``head``)."""
    gpt = raw_model(model)
    attn = gpt.blocks[layer].attn
    C, H = gpt.config.n_embd, gpt.config.n_head
    D = C // H
    w = attn.c_attn.weight
    w_q, w_k, w_v = (w[i * C : (i + 1) * C].reshape(H, D, C) for i in range(3))
    b = attn.c_attn.bias
    b_q, b_k = (None, None) if b is None else (b[:C].reshape(H, D), b[C : 2 * C].reshape(H, D))
    w_o = attn.c_proj.weight.reshape(C, H, D).permute(1, 0, 2)  # (H, C, D): columns of head h
    sel = slice(None) if head is None else slice(head, head + 1)

    def pick(t):
        return None if t is None else t[sel]

    return CausalAttentionMap(
        w_q=w_q[sel], w_k=w_k[sel], b_q=pick(b_q), b_k=pick(b_k),
        w_v=w_v[sel] if values else None, w_o=w_o[sel] if values else None, mask=mask,
        scale=attn.mechanism.scale)


def layer_inputs(model, idx: Tensor, detach: bool = True) -> list[Tensor]:
    """``u^l = ln_1(resid_pre^l)`` (Post-LN: ``resid_pre^l``) for every block: what each attention
    layer actually sees."""
    gpt = raw_model(model)
    names = [f"blocks.{l}.hook_resid_pre" for l in range(gpt.config.n_layer)]
    _, cache = gpt.run_with_cache(idx, names_filter=names, detach=detach)
    return [gpt.blocks[l].attention_input(cache[n]) for l, n in enumerate(names)]


def hook_qk(model, idx: Tensor, targets: Tensor | None = None, detach: bool = True):
    """Run the GPT once; return its output and per-layer (q, k) in (B, H, T, D) layout.

    ``model`` may be the ``torch.compile`` wrapper: q and k come back from the compiled forward
    (``return_qk``), so the layer-placement barrier does not fall back to an eager model.
    """
    logits, loss, qk = model(idx, targets, return_qk=True)
    if detach:
        qk = [(q.detach(), k.detach()) for q, k in qk]
    return (logits, loss), list(qk)


@dataclass
class LayerMargins:
    """``log|det J_t|`` and its sign for each layer: tensors of shape (L, B, M, T).

    ``M`` is the number of maps per layer: ``n_head`` (one per head, no value map) or 1 (the
    whole layer with its value/output map).
    """

    sign: Tensor
    logabs: Tensor
    mask: str
    values: bool

    def margins(self, delta: float = DEFAULT_DELTA) -> Tensor:
        """Smooth margins ``l_delta(det J_t)`` (finite everywhere; = log det J_t above delta)."""
        return smooth_margin_from_det(self.sign.double(), self.logabs.double(), delta).to(self.logabs.dtype)

    def token_margins(self, delta: float = DEFAULT_DELTA) -> Tensor:
        """(B, T): the smallest margin over layers and maps at each position."""
        return self.margins(delta).amin(dim=(0, 2))


@torch.no_grad()
def gpt_margins(model, idx: Tensor, mask: str = "strict", values: bool = False,
                route: str = "auto") -> LayerMargins:
    """Per-layer margins of the GPT's attention maps on token ids ``idx`` (B, T).

    ``route``: "hooks" (strict, no values: ``det(I - C_t)`` from ``hook_q``/``hook_k`` through the
    fused fast path), "standalone" (the closed form on ``u = ln_1(resid_pre)``, any mask and
    value option), or "auto" (hooks when possible).
    """
    gpt = raw_model(model)
    if route == "auto":
        route = "hooks" if (mask == "strict" and not values) else "standalone"
    if route == "hooks":
        if mask != "strict" or values:
            raise ValueError("the hook route covers the strict map without values only")
        _, qk = hook_qk(gpt, idx)
        signs, logs = [], []
        for q, k in qk:
            cov, _ = strict_cov(q.double(), k.double(), scale=gpt.blocks[0].attn.mechanism.scale)
            eye = torch.eye(q.shape[-1], dtype=torch.float64, device=q.device)
            sign, logabs = torch.linalg.slogdet(eye - cov)
            signs.append(sign)
            logs.append(logabs)
        return LayerMargins(torch.stack(signs), torch.stack(logs), mask, values)
    signs, logs = [], []
    for l, u in enumerate(layer_inputs(gpt, idx)):
        u = u.double()
        if values:
            amap = _double(layer_map(gpt, l, values=True, mask=mask))
            sign, logabs = logdet_jacobian(amap, u)
            sign, logabs = sign[:, None], logabs[:, None]
        else:
            per_head = [logdet_jacobian(_double(layer_map(gpt, l, mask=mask, head=h)), u)
                        for h in range(gpt.config.n_head)]
            sign = torch.stack([s for s, _ in per_head], dim=1)
            logabs = torch.stack([a for _, a in per_head], dim=1)
        signs.append(sign)
        logs.append(logabs)
    return LayerMargins(torch.stack(signs), torch.stack(logs), mask, values)


def _double(amap: CausalAttentionMap) -> CausalAttentionMap:
    def conv(t):
        return None if t is None else t.detach().double()

    return CausalAttentionMap(conv(amap.w_q), conv(amap.w_k), conv(amap.b_q), conv(amap.b_k),
                              conv(amap.w_v), conv(amap.w_o), amap.mask, amap.scale)
