"""Attention mechanisms by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..errors import ConfigError
from .base import AttentionContext, AttentionMechanism

_REGISTRY: dict[str, type[AttentionMechanism]] = {}

M = TypeVar("M", bound=type[AttentionMechanism])


def register_attention(name: str) -> Callable[[M], M]:
    """Class decorator: make a mechanism available under ``name``."""

    def decorate(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"attention {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_attention() -> list[str]:
    return sorted(_REGISTRY)


def attention_class(name: str) -> type[AttentionMechanism]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown attention {name!r}; available: {', '.join(available_attention())}"
        ) from None


def validate_attention(name: str, options: dict | None = None, n_head: int | None = None) -> None:
    """Check a name and its options without building anything (used by config validation)."""
    cls = attention_class(name)
    unknown = sorted(set(options or {}) - set(cls.option_names))
    if unknown:
        allowed = ", ".join(cls.option_names) or "none"
        raise ConfigError(f"attention {name!r} has no option(s) {', '.join(unknown)}; allowed: {allowed}")
    check = getattr(cls, "check_config", None)
    if check is not None:
        check(options or {}, n_head)


def build_attention(name: str, ctx: AttentionContext, impl: str = "fast") -> AttentionMechanism:
    validate_attention(name, dict(ctx.options), ctx.n_head)
    return attention_class(name)(ctx, impl=impl)
