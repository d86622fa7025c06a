"""Translation run configuration (model + training + data) and the presets per scale."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import ConfigError
from ..model.seq2seq_config import Seq2SeqConfig
from ..options import setting
from ..train.config import SectionedConfig, TrainConfig, apply_overrides, preset_sections
from .subword import KINDS

TASK = "nmt"  # written into config.json: what tells a translation run from a language-model run
SMOOTHED_CE = {"objective": "label_smoothed_ce", "objective_options": {"label_smoothing": 0.1}}


@dataclass(frozen=True)
class NMTDataConfig:
    corpus: str = setting("ding", "translation corpus: ding, iwslt14, multi30k or a folder with "
                          "train/valid/test files per language (train.de, train.en, ...)")
    src_lang: str = setting("de", "source language (file suffix; multi30k: en, de, fr, cs)")
    tgt_lang: str = setting("en", "target language (file suffix)")
    phrases: bool = setting(True, "train on the dictionary's phrase pairs too (ding), besides its example "
                            "sentences")
    #: multiword phrases carry word order and grammar; the 300k pairs with a one-word side mostly
    #: teach a lexicon
    phrase_min_words: int = setting(1, "keep only phrase pairs with at least this many words on each side")
    max_words: int | None = setting(None, "keep pairs with at most this many words per side (every split; "
                                    "multi30k: train only; none: all)")
    heldout_every: int = setting(20, "every how many-th hash bucket of the sentences is valid / test (ding)")
    max_train_pairs: int | None = setting(None, "at most this many training pairs (a deterministic subset; "
                                          "none: all)")
    tokenizer: str = setting("bpe", "subword tokenizer: " + ", ".join(KINDS))
    vocab_size: int = setting(8000, "target size of the joint subword vocabulary")
    data_dirs: tuple[str, ...] = setting((), "folder searched for named corpora (repeatable; also "
                                         "$PROBATTN_DATA)")
    download: bool = setting(True, "download a missing named corpus (--no-download: error instead)")
    #: else trust on first use: the first download's digest is recorded in the cache and later
    #: preparations are checked against it
    iwslt14_sha256: str | None = setting(None, "iwslt14: the SHA-256 of fairseq's de-en.tgz to insist on")
    test_set: str | None = setting(None, "multi30k: the test set (test2016, test2017, test2018, mscoco2017; "
                                   "none: the corpus' own test split)")

    def __post_init__(self) -> None:
        if self.tokenizer not in KINDS:
            raise ConfigError(f"tokenizer must be one of {', '.join(KINDS)}, got {self.tokenizer!r}")
        if isinstance(self.phrase_min_words, bool) or not isinstance(self.phrase_min_words, int) \
                or self.phrase_min_words < 1:
            raise ConfigError(f"phrase_min_words must be an integer >= 1, got {self.phrase_min_words!r}")
        for name in ("max_words", "max_train_pairs"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size < 8:
            raise ConfigError(f"vocab_size must be an integer >= 8, got {self.vocab_size!r}")
        if not isinstance(self.heldout_every, int) or self.heldout_every < 3:
            raise ConfigError(f"heldout_every must be an integer >= 3, got {self.heldout_every!r}")
        object.__setattr__(self, "data_dirs", tuple(self.data_dirs))


@dataclass(frozen=True)
class NMTRunConfig(SectionedConfig):
    model: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**SMOOTHED_CE))
    data: NMTDataConfig = field(default_factory=NMTDataConfig)
    preset: str = "custom"
    task: str = TASK

    what: ClassVar[str] = "translation run configuration"

    @classmethod
    def from_dict(cls, data: dict[str, Any], complete: bool = False) -> NMTRunConfig:
        if isinstance(data, dict) and data.get("task") != TASK:
            raise ConfigError("not a translation run configuration (a language-model run?)")
        return super().from_dict(data, complete)


# Each preset lists only what differs from the dataclass defaults.
NMT_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # seconds: tests and smoke runs (a subset of the dictionary, a tiny model)
    "smoke": {
        "model": dict(n_enc_layer=1, n_dec_layer=1, n_head=2, n_embd=32, ffn=64, max_len=48, dropout=0.0),
        "train": dict(max_steps=30, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_interval=15,
                      eval_batches=2, log_interval=5, weight_decay=0.0, beta2=0.98),
        "data": dict(max_words=8, max_train_pairs=3000, vocab_size=500),
    },
    # 2 CPU cores, about 4 minutes a run on one idle core: the dictionary's example sentences of
    # <= 8 words, a small model. Tried and not better (seed 0, test BLEU / chrF, beam 4): this
    # preset 2.92 / 17.2; dropout 0.3, vocabulary 1000, 2400 steps 2.63 / 17.1; with the 33k
    # multiword phrase pairs (--phrase-min-words 3, with the same three changes) valid BLEU 0.91
    # against 1.97; with every phrase pair (96% of the pairs: the model memorises headwords) 0.02
    "quick": {
        "model": dict(n_enc_layer=3, n_dec_layer=3, n_head=4, n_embd=128, ffn=512, max_len=32, dropout=0.1),
        "train": dict(max_steps=1200, batch_size=64, lr=2e-3, min_lr=2e-5, warmup_steps=200, eval_interval=400,
                      eval_batches=20, log_interval=50, weight_decay=0.0001, beta2=0.98),
        "data": dict(max_words=8, vocab_size=2000, phrases=False),
    },
    # Multi30k on 2 CPU cores (issue 19): 3+3 layers x 256 (FFN 1024, 4 heads), the size of the
    # published small-Transformer Multi30k baselines; dropout 0.3 because 29k pairs overfit a
    # 7.6 M-parameter model within a few epochs; one joint BPE of 8000 (the subword sizes used
    # on Multi30k are 5k-10k; 8000 reached 32.2 BLEU de->en after 6.6 epochs in the data README's
    # trial) with all three embeddings shared. max_len 64 holds every valid and test sentence
    # (the longest: 46 source subwords in val, 38 in test2016) so both are scored whole. Batches of
    # 128 pairs (227 steps an epoch), evaluated on the whole valid split every 250 steps; a cosine
    # schedule of 6000 steps (26 epochs) of which training stops early once 4 evaluations in a row
    # (1000 steps) bring no better validation NLL; the best checkpoint is the one scored.
    "multi30k": {
        "model": dict(n_enc_layer=3, n_dec_layer=3, n_head=4, n_embd=256, ffn=1024, max_len=64, dropout=0.3,
                      share="all"),
        "train": dict(max_steps=6000, batch_size=128, lr=1e-3, min_lr=1e-5, warmup_steps=400, eval_interval=250,
                      eval_batches=100, patience=4, log_interval=50, weight_decay=0.0001, beta2=0.98),
        "data": dict(corpus="multi30k", src_lang="en", tgt_lang="de", vocab_size=8000, phrases=False),
    },
    # fairseq's transformer_iwslt_de_en (6+6 layers, 512 wide, 4 heads, FFN 1024), for a GPU
    "paper": {
        "model": dict(n_enc_layer=6, n_dec_layer=6, n_head=4, n_embd=512, ffn=1024, max_len=256, dropout=0.3),
        "train": dict(max_steps=60000, batch_size=128, lr=5e-4, min_lr=1e-6, warmup_steps=4000,
                      eval_interval=2000, eval_batches=40, log_interval=100, weight_decay=0.0001,
                      beta2=0.98, grad_clip=0.0),
        "data": dict(vocab_size=10000),
    },
}


def nmt_preset(name: str) -> NMTRunConfig:
    p = preset_sections(NMT_PRESETS, name, "translation preset")
    p["train"] = {**SMOOTHED_CE, **p["train"]}
    return NMTRunConfig.from_dict({**p, "task": TASK})


nmt_overrides = apply_overrides  # the same section-by-section update; returns an NMTRunConfig
