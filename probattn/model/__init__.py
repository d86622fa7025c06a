"""A small GPT with pluggable attention and TransformerLens-style hook points."""

from .config import GPTConfig
from .gpt import GPT, Block, CausalSelfAttention
from .hooks import HookedMixin, HookPoint

__all__ = ["GPT", "GPTConfig", "Block", "CausalSelfAttention", "HookPoint", "HookedMixin"]
