"""Model configuration: a frozen dataclass validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError
from ..options import POSITIVE_INT, Range, check_fields, from_fields, setting

NORM_POSITIONS = ("pre", "post")


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = setting(65, "vocabulary size (set by the tokenizer)", POSITIVE_INT)
    block_size: int = setting(256, "context length in tokens", POSITIVE_INT)
    n_layer: int = setting(6, "transformer blocks", POSITIVE_INT)
    n_head: int = setting(6, "attention heads per block (must divide n_embd)", POSITIVE_INT)
    n_embd: int = setting(384, "embedding width", POSITIVE_INT)
    dropout: float = setting(0.0, "dropout probability", Range(0, 1, hi_open=True))
    bias: bool = setting(False, "biases in the linear layers and LayerNorms")
    #: MLP hidden width; None means 4 * n_embd (set it to match parameter counts across variants)
    mlp_hidden: int | None = setting(None, "MLP hidden width (none: 4 x n_embd)", POSITIVE_INT)
    #: "pre": x + f(LN x), final LayerNorm (GPT-2, nanoGPT); "post": LN(x + f(x)), no final
    #: LayerNorm (the original Transformer, fairseq's default)
    norm_position: str = setting("pre", "LayerNorm placement: pre (GPT-2) or post (original Transformer)")
    attention: str = setting("softmax", "attention mechanism (probattn list)")
    #: mechanism-specific options, e.g. {"lam": 0.2} for gpam (validated by the mechanism)
    attention_options: dict[str, Any] = setting(help="mechanism option, e.g. lam=0.5 (repeatable)",
                                                default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.norm_position not in NORM_POSITIONS:
            raise ConfigError(f"norm_position must be one of {', '.join(NORM_POSITIONS)}, got {self.norm_position!r}")
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        from ..attention import validate_attention

        validate_attention(self.attention, dict(self.attention_options), self.n_head)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_width(self) -> int:
        return self.mlp_hidden or 4 * self.n_embd

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        return from_fields(cls, data, "model config")
