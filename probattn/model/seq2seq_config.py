"""Encoder-decoder configuration: a frozen dataclass validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError
from ..options import from_fields, setting

NORMS = ("pre", "post")
POSITIONS = ("sinusoidal", "learned")
#: "none": three matrices; "decoder": target embedding = output projection (fairseq's
#: --share-decoder-input-output-embed); "all": source, target and output share one (joint vocab)
SHARING = ("none", "decoder", "all")
KINDS = ("encoder", "decoder", "cross")


@dataclass(frozen=True)
class Seq2SeqConfig:
    vocab_size: int = setting(1000, "one joint subword vocabulary for both languages (set by the tokenizer)")
    max_len: int = setting(128, "positions per side (source and target, BOS/EOS included)")
    n_enc_layer: int = setting(3, "encoder layers")
    n_dec_layer: int = setting(3, "decoder layers")
    n_head: int = setting(4, "attention heads per layer")
    n_embd: int = setting(256, "model width (embedding size)")
    ffn: int = setting(1024, "hidden width of the feed-forward sublayers")
    dropout: float = setting(0.1, "dropout on embeddings and sublayer outputs")
    attn_dropout: float = setting(0.0, "dropout on the attention weights")
    act_dropout: float = setting(0.0, "dropout after the feed-forward activation")
    norm: str = setting("pre", "LayerNorm placement: pre or post")
    positions: str = setting("sinusoidal", "position encoding: sinusoidal or learned")
    share: str = setting("decoder", "shared embeddings: none, decoder (target embedding = output "
                         "projection) or all (source, target and output)")
    bias: bool = setting(True, "biases in the linear layers and LayerNorms")
    #: attention mechanism per kind: encoder self-attention, decoder self-attention, cross-attention
    enc_attention: str = setting("softmax", "encoder self-attention mechanism (probattn list)")
    dec_attention: str = setting("softmax", "decoder self-attention mechanism (probattn list)")
    cross_attention: str = setting("softmax", "cross-attention mechanism (probattn list)")
    enc_attention_options: dict[str, Any] = setting(help="encoder attention option, e.g. lam=0.1 (repeatable)",
                                                    default_factory=dict)
    dec_attention_options: dict[str, Any] = setting(help="decoder attention option (repeatable)",
                                                    default_factory=dict)
    cross_attention_options: dict[str, Any] = setting(help="cross-attention option (repeatable)",
                                                      default_factory=dict)
    pad_id: int = setting(0, "padding token id (set by the tokenizer)")
    bos_id: int = setting(1, "begin-of-sentence token id (set by the tokenizer)")
    eos_id: int = setting(2, "end-of-sentence token id (set by the tokenizer)")

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "n_enc_layer", "n_dec_layer", "n_head", "n_embd", "ffn"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        special = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        for name, value in special.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ConfigError(f"{name} must be a token id in [0, vocab_size={self.vocab_size}), got {value!r}")
        if len(set(special.values())) < len(special):
            raise ConfigError("pad_id, bos_id and eos_id must be different tokens, got "
                              + ", ".join(f"{k}={v}" for k, v in special.items()))
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
