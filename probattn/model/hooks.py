"""TransformerLens-style hook points.

Every interesting activation passes through a named :class:`HookPoint` (an identity module), so
studies can read or edit per-layer quantities without touching the model code. Names and shapes
follow TransformerLens: ``hook_embed`` and ``hook_pos_embed`` (batch, pos, d_model),
``blocks.{l}.attn.hook_q`` (batch, pos, head, d_head), ``blocks.{l}.attn.hook_pattern`` (batch,
head, query, key), ``blocks.{l}.hook_resid_post``... and so do the entry points:
``run_with_cache(tokens, names_filter=...)`` returns ``(output, ActivationCache)`` (indexed by name
or TransformerLens's short form ``cache["pattern", 0]``), ``run_with_hooks(tokens,
fwd_hooks=[(name or filter, fn)])`` runs with temporary hooks, and a hook ``fn(activation, hook)``
may return a tensor to replace the activation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ProbattnError

HookFn = Callable[[Tensor, "HookPoint"], Tensor | None]
NamesFilter = str | Iterable[str] | Callable[[str], bool] | None

#: TransformerLens short names inside an attention layer; the others live on the block
_ATTN_NAMES = ("q", "k", "v", "z", "pattern")
_BLOCK_NAMES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
_MODEL_NAMES = ("embed", "pos_embed")


class HookError(ProbattnError):
    """A hook that cannot be honoured (e.g. an edited pattern a mechanism cannot apply)."""


def get_act_name(name: str, layer: int | None = None) -> str:
    """TransformerLens's ``utils.get_act_name``: ``("pattern", 0)`` -> ``blocks.0.attn.hook_pattern``.

    Full names pass through unchanged.
    """
    if "." in name or (name.startswith("hook_") and layer is None):
        return name
    short = name.removeprefix("hook_")
    if short in _MODEL_NAMES:
        return f"hook_{short}"
    if layer is None:
        raise KeyError(f"activation {name!r} needs a layer index")
    if short in _ATTN_NAMES:
        return f"blocks.{layer}.attn.hook_{short}"
    if short in _BLOCK_NAMES:
        return f"blocks.{layer}.hook_{short}"
    raise KeyError(f"unknown activation name {name!r}")


class ActivationCache(dict):
    """Cached activations by full hook name; ``cache["pattern", 0]`` also works (TransformerLens)."""

    def __getitem__(self, key: str | tuple[str, int]) -> Tensor:
        if isinstance(key, tuple):
            key = get_act_name(*key)
        elif key not in self and "." not in key:
            key = get_act_name(key)
        return super().__getitem__(key)


class HookPoint(nn.Module):
    """Identity module; ``add_hook(fn)`` calls ``fn(activation, hook)`` on every forward.

    A hook may return a tensor to replace the activation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""

    def add_hook(self, fn: HookFn, dir: str = "fwd"):
        if dir != "fwd":
            raise HookError("only forward hooks are supported (use torch autograd for gradients)")

        def wrapper(module: nn.Module, inputs, output):
            return fn(output, self)

        return self.register_forward_hook(wrapper)

    def has_hooks(self) -> bool:
        return bool(self._forward_hooks)

    def forward(self, x: Tensor) -> Tensor:
        return x


def _select(points: dict[str, HookPoint], names_filter: NamesFilter) -> list[str]:
    """Hook names chosen by TransformerLens's ``names_filter``: None (all), a name, names, or a predicate."""
    if names_filter is None:
        return list(points)
    if callable(names_filter):
        return [n for n in points if names_filter(n)]
    wanted = [names_filter] if isinstance(names_filter, str) else list(names_filter)
    unknown = [n for n in wanted if n not in points]
    if unknown:
        raise KeyError(f"no hook point named {unknown[0]!r}")
    return wanted


def through(hook: HookPoint, t: Tensor) -> Tensor:
    """``hook(t)``; a hooked view of a fused projection is copied first, so that hooks may edit it
    in place (autograd forbids that on one of several views of one tensor)."""
    return hook(t.clone()) if hook.has_hooks() else t


def attend(mechanism: nn.Module, hook_pattern: HookPoint, q: Tensor, k: Tensor, v: Tensor, **mask) -> Tensor:
    """``mechanism(q, k, v, **mask)``'s output, with ``hook_pattern`` honoured when it is hooked.

    As in TransformerLens, the pattern the hooks return (or edit in place) is the one that mixes
    the values; the weights are materialised only then. A mechanism whose output is not
    ``pattern @ v`` (Diff attention normalises after mixing) refuses an edited pattern.
    """
    if not hook_pattern.has_hooks():
        return mechanism(q, k, v, **mask)[0]
    y, weights = mechanism(q, k, v, need_weights=True, **mask)
    version = weights._version  # bumped by in-place edits
    pattern = hook_pattern(weights)
    if pattern is weights and weights._version == version:
        return y
    if not mechanism.pattern_mixes_values:
        raise HookError(
            f"{hook_pattern.name}: the {mechanism.name!r} mechanism does not compute its output "
            "as pattern @ v, so an edited pattern cannot be applied; edit hook_q, hook_k, hook_v or hook_z")
    if pattern.shape != weights.shape:
        raise HookError(f"{hook_pattern.name}: a hook returned shape {tuple(pattern.shape)}, "
                        f"expected {tuple(weights.shape)}")
    return F.dropout(pattern, mechanism.attn_dropout_p(), mechanism.training) @ v


class HookedMixin:
    """Adds ``hook_points``, ``hooks(...)``, ``run_with_hooks(...)`` and ``run_with_cache(...)``."""

    def _name_hook_points(self) -> None:
        for name, module in self.named_modules():  # type: ignore[attr-defined]
            if isinstance(module, HookPoint):
                module.name = name

    @property
    def hook_points(self) -> dict[str, HookPoint]:
        return {
            name: m
            for name, m in self.named_modules()  # type: ignore[attr-defined]
            if isinstance(m, HookPoint)
        }

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]] = ()) -> Iterator[None]:
        """Temporarily attach hooks; a name may be an exact string or a predicate on names."""
        points = self.hook_points
        handles = []
        try:
            for selector, fn in fwd_hooks:
                handles.extend(points[n].add_hook(fn) for n in _select(points, selector))
            yield
        finally:
            for h in handles:
                h.remove()

    def run_with_hooks(self, *args, fwd_hooks: Iterable[tuple[Any, HookFn]] = (), bwd_hooks=(),
                       reset_hooks_end: bool = True, **kwargs):
        """Forward with ``fwd_hooks`` attached for this call only (TransformerLens's signature)."""
        if bwd_hooks:
            raise HookError("backward hooks are not supported; take gradients with torch.autograd")
        if not reset_hooks_end:
            raise HookError("hooks are always removed after the call (reset_hooks_end=False is not supported)")
        with self.hooks(fwd_hooks):
            return self(*args, **kwargs)  # type: ignore[operator]

    def run_with_cache(self, *args, names_filter: NamesFilter = None, return_cache_object: bool = True,
                       detach: bool = True, **kwargs):
        """Run forward and return ``(output, cache)`` with the activations ``names_filter`` selects."""
        selected = _select(self.hook_points, names_filter)
        cache = ActivationCache()

        def store(x: Tensor, hook: HookPoint):
            cache[hook.name] = x.detach() if detach else x

        with self.hooks([(n, store) for n in selected]):
            out = self(*args, **kwargs)  # type: ignore[operator]
        return out, (cache if return_cache_object else dict(cache))
