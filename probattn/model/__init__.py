"""A small GPT and an encoder-decoder Transformer, both with pluggable attention and
TransformerLens-style hook points."""

from .config import GPTConfig
from .gpt import GPT, Block, CausalSelfAttention
from .hooks import HookedMixin, HookPoint
from .seq2seq import Seq2Seq
from .seq2seq_config import Seq2SeqConfig

__all__ = ["GPT", "GPTConfig", "Block", "CausalSelfAttention", "HookPoint", "HookedMixin", "Seq2Seq",
           "Seq2SeqConfig"]
