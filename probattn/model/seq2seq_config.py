"""Encoder-decoder configuration: a frozen dataclass validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from ..options import from_fields

NORMS = ("pre", "post")
POSITIONS = ("sinusoidal", "learned")
#: "none": three matrices; "decoder": target embedding = output projection (fairseq's
#: --share-decoder-input-output-embed); "all": source, target and output share one (joint vocab)
SHARING = ("none", "decoder", "all")
KINDS = ("encoder", "decoder", "cross")


@dataclass(frozen=True)
class Seq2SeqConfig:
    vocab_size: int = 1000  # one joint subword vocabulary for both languages
    max_len: int = 128  # positions per side (source and target, BOS/EOS included)
    n_enc_layer: int = 3
    n_dec_layer: int = 3
    n_head: int = 4
    n_embd: int = 256
    ffn: int = 1024
    dropout: float = 0.1
    attn_dropout: float = 0.0
    act_dropout: float = 0.0
    norm: str = "pre"
    positions: str = "sinusoidal"
    share: str = "decoder"
    bias: bool = True
    #: attention mechanism per kind: encoder self-attention, decoder self-attention, cross-attention
    enc_attention: str = "softmax"
    dec_attention: str = "softmax"
    cross_attention: str = "softmax"
    enc_attention_options: dict[str, Any] = field(default_factory=dict)
    dec_attention_options: dict[str, Any] = field(default_factory=dict)
    cross_attention_options: dict[str, Any] = field(default_factory=dict)
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "n_enc_layer", "n_dec_layer", "n_head", "n_embd", "ffn"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        for name in ("dropout", "attn_dropout", "act_dropout"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        for name, allowed in (("norm", NORMS), ("positions", POSITIONS), ("share", SHARING)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.positions == "sinusoidal" and self.n_embd % 2:
            raise ConfigError("sinusoidal positions need an even n_embd")
        from ..attention import validate_attention

        for kind in KINDS:
            validate_attention(self.attention(kind), dict(self.attention_options(kind)), self.n_head)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def attention(self, kind: str) -> str:
        return {"encoder": self.enc_attention, "decoder": self.dec_attention, "cross": self.cross_attention}[kind]

    def attention_options(self, kind: str) -> dict[str, Any]:
        return {"encoder": self.enc_attention_options, "decoder": self.dec_attention_options,
                "cross": self.cross_attention_options}[kind]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Seq2SeqConfig:
        return from_fields(cls, data, "model config")
