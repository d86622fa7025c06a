"""TransformerLens-style hook points.

Every interesting activation passes through a named :class:`HookPoint` (an identity module), so
studies can read or edit per-layer quantities without touching the model code. Names follow
TransformerLens: ``hook_embed``, ``blocks.{l}.attn.hook_q`` (batch, pos, head, d_head),
``blocks.{l}.attn.hook_pattern`` (batch, head, query, key), ``blocks.{l}.hook_resid_post``...
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from torch import Tensor, nn

HookFn = Callable[[Tensor, "HookPoint"], Tensor | None]


class HookPoint(nn.Module):
    """Identity module; ``add_hook(fn)`` calls ``fn(activation, hook)`` on every forward.

    A hook may return a tensor to replace the activation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""

    def add_hook(self, fn: HookFn):
        def wrapper(module: nn.Module, inputs, output):
            return fn(output, self)

        return self.register_forward_hook(wrapper)

    def has_hooks(self) -> bool:
        return bool(self._forward_hooks)

    def forward(self, x: Tensor) -> Tensor:
        return x


class HookedMixin:
    """Adds ``hook_points``, ``hooks(...)`` and ``run_with_cache(...)`` to a module tree."""

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
    def hooks(self, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]]) -> Iterator[None]:
        """Temporarily attach hooks; a name may be an exact string or a predicate on names."""
        points = self.hook_points
        handles = []
        try:
            for selector, fn in fwd_hooks:
                if callable(selector):
                    chosen = [p for n, p in points.items() if selector(n)]
                else:
                    if selector not in points:
                        raise KeyError(f"no hook point named {selector!r}")
                    chosen = [points[selector]]
                handles.extend(p.add_hook(fn) for p in chosen)
            yield
        finally:
            for h in handles:
                h.remove()

    def run_with_cache(self, *args, names: Iterable[str] | Callable[[str], bool] | None = None,
                       detach: bool = True, **kwargs):
        """Run forward and return ``(output, cache)`` with the selected activations."""
        points = self.hook_points
        if names is None:
            selected = list(points)
        elif callable(names):
            selected = [n for n in points if names(n)]
        else:
            selected = list(names)
        cache: dict[str, Tensor] = {}

        def store(x: Tensor, hook: HookPoint):
            cache[hook.name] = x.detach() if detach else x

        with self.hooks([(n, store) for n in selected]):
            out = self(*args, **kwargs)  # type: ignore[operator]
        return out, cache
