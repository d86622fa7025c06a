"""Character- and byte-level tokenizers, serialisable to JSON (saved with every run)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..options import not_utf8


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)


class CharTokenizer:
    """One token per Unicode character; the vocabulary is the sorted set of characters seen."""

    kind = "char"

    def __init__(self, chars: list[str]):
        if not chars:
            raise DataError("a character vocabulary needs at least one character")
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise DataError("a character vocabulary must list distinct single characters")
        self.chars = list(chars)
        self._cps = _codepoints("".join(self.chars))
        self._order = np.argsort(self._cps)
        self._sorted = self._cps[self._order]

    @classmethod
    def from_text(cls, *texts: str) -> CharTokenizer:
        return cls(sorted(set().union(*(set(t) for t in texts))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown_chars(self, text: str) -> list[str]:
        return sorted(set(text) - set(self.chars))

    def encode(self, text: str) -> torch.Tensor:
        cps = _codepoints(text)
        pos = np.searchsorted(self._sorted, cps)
        pos = np.minimum(pos, len(self._sorted) - 1)
        bad = self._sorted[pos] != cps
        if bad.any():
            if not_utf8(text):
                raise DataError(f"the text {not_utf8(text)}")
            missing = self.unknown_chars(text)
            shown = ", ".join(repr(c) for c in missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise DataError(
                f"text has {len(missing)} character(s) outside the model's vocabulary: {shown}"
            )
        return torch.from_numpy(self._order[pos].astype(np.int64))

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in _as_list(ids))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "char", "chars": "".join(self.chars)}


class ByteTokenizer:
    """One token per UTF-8 byte: a fixed vocabulary of 256, nothing is out of vocabulary."""

    kind = "byte"
    vocab_size = 256

    def unknown_chars(self, text: str) -> list[str]:
        return []

    def encode(self, text: str) -> torch.Tensor:
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"the text {not_utf8(text)}") from None
        data = np.frombuffer(raw, dtype=np.uint8)
        return torch.from_numpy(data.astype(np.int64))

    def decode(self, ids) -> str:
        return bytes(_as_list(ids)).decode("utf-8", errors="replace")

    def to_dict(self) -> dict[str, Any]:
        return {"type": "byte"}


Tokenizer = CharTokenizer | ByteTokenizer


def _as_list(ids) -> list[int]:
    if isinstance(ids, torch.Tensor):
        return ids.reshape(-1).tolist()
    return [int(i) for i in ids]


def build_tokenizer(kind: str, *texts: str) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.from_text(*texts)
    if kind == "byte":
        return ByteTokenizer()
    raise ConfigError(f"unknown tokenizer {kind!r}; available: char, byte")


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    kind = data.get("type")
    if kind == "char":
        return CharTokenizer(list(data["chars"]))
    if kind == "byte":
        return ByteTokenizer()
    raise DataError(f"unknown tokenizer type {kind!r} in saved vocabulary")
