"""Joint subword vocabulary for both languages, through Hugging Face ``tokenizers``.

BPE over a SentencePiece-style ``Metaspace`` pre-tokenizer (spaces become a visible marker), so
decoding restores the original spacing: the hypotheses are detokenized text for sacrebleu.
``char`` is the fallback: the same tokenizer without merges (the training text's characters).
Trained on the training split only and saved with the run (``tokenizer.json``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..errors import CheckpointError, ConfigError

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
PAD, BOS, EOS, UNK = range(4)
KINDS = ("bpe", "char")


class SubwordTokenizer:
    def __init__(self, tokenizer, kind: str):
        self._tok = tokenizer
        self.kind = kind
        for i, name in enumerate(SPECIALS):
            if tokenizer.token_to_id(name) != i:
                raise CheckpointError(f"tokenizer special token {name!r} is not id {i}")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, kind: str = "bpe") -> SubwordTokenizer:
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        if kind not in KINDS:
            raise ConfigError(f"tokenizer must be one of {', '.join(KINDS)}, got {kind!r}")
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        # char: a vocabulary no larger than the specials allows no merge, only the alphabet
        texts = list(texts)
        size = len(SPECIALS) + 1 if kind == "char" else min(vocab_size, _most_tokens(texts))
        trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=list(SPECIALS), show_progress=False,
                                      limit_alphabet=1000)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok, kind)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids if int(i) not in (PAD, BOS, EOS)]
        return self._tok.decode(ids, skip_special_tokens=False).strip()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": f"hf-{self.kind}", "json": self._tok.to_str()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubwordTokenizer:
        from tokenizers import Tokenizer

        kind = str(data.get("kind", ""))
        if not kind.startswith("hf-") or "json" not in data:
            raise CheckpointError(f"not a translation tokenizer (kind {kind or 'missing'!r})")
        try:
            tok = Tokenizer.from_str(data["json"])
        except Exception as e:  # tokenizers raises its own exception type
            raise CheckpointError(f"unreadable tokenizer ({str(e)[:120]})") from None
        return cls(tok, kind[3:])

    def fingerprint(self) -> str:
        """A short hash of the vocabulary (a checkpoint records it; a foreign tokenizer differs)."""
        import hashlib

        vocab = json.dumps(sorted(self._tok.get_vocab().items()), ensure_ascii=False)
        return hashlib.sha256(vocab.encode("utf-8")).hexdigest()[:16]


def _most_tokens(texts: list[str]) -> int:
    """More than BPE can ever make of ``texts``: the specials, the alphabet and one merge per
    symbol boundary of each distinct word (with its word-start mark). The trainer sizes its tables
    by the vocabulary asked for, so asking for 10^9 would allocate tens of GB for nothing; capped at
    this bound, the vocabulary it learns is the same."""
    import unicodedata

    words = {unicodedata.normalize("NFKC", w) for t in texts for w in t.split()}
    alphabet = {c for w in words for c in w}
    return len(SPECIALS) + len(alphabet) + 1 + sum(len(w) for w in words)
