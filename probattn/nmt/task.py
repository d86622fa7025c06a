"""Translation as a trainer task: encoded pairs, length-bucketed batches, label-smoothed loss.

A batch is ``x = (src, tgt_in)``, ``y = tgt_out``: the source ends in EOS, the decoder input
starts with BOS, the targets are the decoder input shifted by one and end in EOS; all right-padded
with PAD (0). Training batches are windows of consecutive pairs in (source, target) length order (ties in a
seeded random order) starting at a random pair: little padding, one seeded generator (resumable
like the LM's windows).
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from ..io import note_input
from ..model.seq2seq import Seq2Seq
from ..model.seq2seq_config import Seq2SeqConfig
from ..options import Options, Range, option
from ..train.footprint import check_training_memory
from ..train.objectives import Objective
from .corpus import Pairs, load_parallel
from .subword import BOS, EOS, PAD, SubwordTokenizer

Encoded = list[tuple[list[int], list[int]]]


def encode_pairs(tok: SubwordTokenizer, pairs: Pairs) -> Encoded:
    src = tok.encode_batch([s for s, _ in pairs])
    tgt = tok.encode_batch([t for _, t in pairs])
    return list(zip(src, tgt))


def fits(pair: tuple[list[int], list[int]], max_len: int) -> bool:
    """Source + EOS and BOS + target within the model's positions."""
    return len(pair[0]) + 1 <= max_len and len(pair[1]) + 1 <= max_len


def collate(pairs: Encoded) -> tuple[tuple[Tensor, Tensor], Tensor]:
    S = max(len(s) for s, _ in pairs) + 1
    T = max(len(t) for _, t in pairs) + 1
    src = torch.full((len(pairs), S), PAD, dtype=torch.long)
    tgt_in = torch.full((len(pairs), T), PAD, dtype=torch.long)
    tgt_out = torch.full((len(pairs), T), PAD, dtype=torch.long)
    for i, (s, t) in enumerate(pairs):
        src[i, : len(s) + 1] = torch.tensor(s + [EOS])
        tgt_in[i, : len(t) + 1] = torch.tensor([BOS] + t)
        tgt_out[i, : len(t) + 1] = torch.tensor(t + [EOS])
    return (src, tgt_in), tgt_out


def source_batch(ids: list[list[int]]) -> Tensor:
    S = max(len(s) for s in ids) + 1
    src = torch.full((len(ids), S), PAD, dtype=torch.long)
    for i, s in enumerate(ids):
        src[i, : len(s) + 1] = torch.tensor(s + [EOS])
    return src


class LengthWindows:
    """Random windows of consecutive pairs in length order (resumable).

    One seeded generator draws the *global* batch, a window of ``batch_size * world_size`` pairs,
    and each data-parallel rank keeps its slice; the batch also carries the global batch's mean
    target tokens per rank, by which the loss is normalised. So N processes see exactly the pairs,
    and follow exactly the gradients, of one process with an N-times larger batch (a per-rank
    mean would weight the ranks' tokens unequally: their slices differ in length).
    """

    def __init__(self, pairs: Encoded, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if len(pairs) < batch_size * world_size:
            raise DataError(f"only {len(pairs)} training pairs for a batch of {batch_size * world_size}")
        # ties in length are broken at random (seeded): a stable sort would keep the corpus order,
        # and windows of neighbouring dictionary entries (one headword family) make poor batches
        shuffled = list(pairs)
        random.Random(seed).shuffle(shuffled)
        self.pairs = sorted(shuffled, key=lambda p: (len(p[0]), len(p[1])))
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.generator = torch.Generator().manual_seed(seed)

    def next(self):
        size = self.batch_size * self.world_size
        a = int(torch.randint(len(self.pairs) - size + 1, (1,), generator=self.generator))
        window = self.pairs[a: a + size]
        (src, tgt_in), tgt_out = collate(window[self.rank * self.batch_size: (self.rank + 1) * self.batch_size])
        per_rank = torch.tensor(sum(len(t) + 1 for _, t in window) / self.world_size)
        return (src, tgt_in, per_rank), tgt_out


def eval_batches(pairs: Encoded, batch_size: int, n_batches: int) -> list:
    """Fixed validation batches spread over the length-sorted pairs (the same at every evaluation)."""
    ordered = sorted(pairs, key=lambda p: (len(p[0]), len(p[1])))
    chunks = [ordered[i: i + batch_size] for i in range(0, len(ordered), batch_size)]
    if len(chunks) > n_batches:
        step = len(chunks) / n_batches
        chunks = [chunks[int(i * step)] for i in range(n_batches)]
    return [collate(c) for c in chunks]


@dataclass(frozen=True)
class LabelSmoothingOptions(Options):
    label = "objective option"
    label_smoothing: float = option(0.1, "eps: weight of the uniform target mixed in (fairseq's)",
                                    Range(0, 1, hi_open=True))


class LabelSmoothedCE(Objective):
    """fairseq's label-smoothed cross-entropy: ``(1 - eps) nll + eps * mean_v(-log p_v)`` over
    non-pad targets. ``loss`` in the metrics is the plain NLL (what validation compares)."""

    name = "label_smoothed_ce"
    Options = LabelSmoothingOptions

    def __init__(self, model: nn.Module | None = None, **options):
        super().__init__(model, **options)
        self.eps = self.options.label_smoothing

    @staticmethod
    def parts(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(per-token nll, per-token mean -log p over the vocabulary, non-pad mask), flattened."""
        logp = F.log_softmax(logits.reshape(-1, logits.size(-1)).float(), dim=-1)
        flat = targets.reshape(-1)
        keep = flat != PAD
        nll = -logp.gather(1, flat.clamp_min(0)[:, None])[:, 0]
        smooth = -logp.mean(dim=-1)
        return nll, smooth, keep

    def forward(self, model, x, y):
        src, tgt_in = x[:2]
        logits, _ = model(src, tgt_in)
        nll, smooth, keep = self.parts(logits, y)
        # a training batch names its normaliser (the global batch's target tokens per rank, see
        # LengthWindows); otherwise the batch's own non-pad targets
        n = x[2] if len(x) > 2 else keep.sum().clamp_min(1)
        nll_mean = (nll * keep).sum() / n
        loss = (1 - self.eps) * nll_mean + self.eps * (smooth * keep).sum() / n
        return loss, {"nll": nll_mean.detach()}

    @torch.no_grad()
    def eval_metrics(self, model, x, y):
        src, tgt_in = x[:2]
        logits, _ = model(src, tgt_in)
        nll, _, keep = self.parts(logits, y)
        n = keep.sum().clamp_min(1)
        loss = (nll * keep).sum() / n
        acc = ((logits.reshape(-1, logits.size(-1)).argmax(-1) == y.reshape(-1)) & keep).sum() / n
        # weight: the trainer averages per target token, not per batch (batches differ in length)
        return {"loss": loss, "acc": acc, "ppl": torch.exp(loss), "weight": n.float()}


def load_corpus_for(data) -> ParallelCorpus:  # noqa: F821 - forward name for readers
    """The corpus a data config describes (cached per process: experiments train many runs on it);
    its files are noted as inputs each time (so a command never writes over a cached corpus's files)."""
    corpus = _cached_corpus(data)
    source = Path(corpus.source) if corpus.source else None
    if source is not None and source.is_dir():
        note_input(source, f"the corpus folder {source}")
        for f in sorted(source.iterdir()):
            if f.is_file():
                note_input(f, f"a file of the corpus {source}")
    elif source is not None and source.is_file():
        note_input(source, f"the corpus file {source}")
    return corpus


@functools.lru_cache(maxsize=4)
def _cached_corpus(data) -> ParallelCorpus:  # noqa: F821
    corpus = load_parallel(data.corpus, data.src_lang, data.tgt_lang, data.data_dirs, phrases=data.phrases,
                           phrase_min_words=data.phrase_min_words,
                           max_words=data.max_words, heldout_every=data.heldout_every,
                           download=data.download, sha256=data.iwslt14_sha256, test_set=data.test_set)
    if data.max_train_pairs and len(corpus.train) > data.max_train_pairs:
        rng = random.Random(0)  # a fixed subset, whatever the run's seed
        keep = sorted(rng.sample(range(len(corpus.train)), data.max_train_pairs))
        corpus = type(corpus)(corpus.name, corpus.src_lang, corpus.tgt_lang, [corpus.train[i] for i in keep],
                              corpus.valid, corpus.test, corpus.source,
                              corpus.notes + (f"train subset: {data.max_train_pairs} pairs",))
    for split in ("train", "valid"):
        if not getattr(corpus, split):
            raise DataError(f"corpus {corpus.name!r} has no {split} pairs after filtering")
    return corpus


@functools.lru_cache(maxsize=4)
def train_tokenizer(data) -> SubwordTokenizer:
    """The joint vocabulary of a data config's training split (cached per process)."""
    corpus = load_corpus_for(data)
    texts = [s for s, _ in corpus.train] + [t for _, t in corpus.train]
    return SubwordTokenizer.train(texts, data.vocab_size, data.tokenizer)


class NMTTask:
    """The trainer task for :class:`~probattn.nmt.config.NMTRunConfig` runs."""

    def prepare(self, trainer, meta: dict | None) -> None:
        cfg = trainer.config
        if cfg.train.log_query_grad_norms:
            raise ConfigError("log_query_grad_norms is for GPT runs only")
        corpus = load_corpus_for(cfg.data)
        trainer.corpus = corpus
        if meta:
            trainer.tokenizer = SubwordTokenizer.from_dict(meta["tokenizer"])
        else:
            trainer.tokenizer = train_tokenizer(cfg.data)
        trainer.model_config = Seq2SeqConfig(**{**cfg.model.to_dict(), "vocab_size": trainer.tokenizer.vocab_size,
                                                "pad_id": PAD, "bos_id": BOS, "eos_id": EOS})
        check_training_memory(trainer)
        max_len = trainer.model_config.max_len
        train = [p for p in encode_pairs(trainer.tokenizer, corpus.train) if fits(p, max_len)]
        valid = [p for p in encode_pairs(trainer.tokenizer, corpus.valid) if fits(p, max_len)]
        if not valid:
            raise DataError(f"no validation pair fits max_len {max_len}")
        t, dist = cfg.train, trainer.dist
        trainer.batches = LengthWindows(train, t.batch_size, seed=t.seed, rank=dist.rank,
                                        world_size=dist.world_size)
        # every rank scores the same batches, of the global batch size: validation does not depend on
        # how many processes share a step
        trainer.eval_batches = eval_batches(valid, t.batch_size * dist.world_size, t.eval_batches)
        mean_tgt = sum(len(tg) + 1 for _, tg in train) / len(train)
        trainer.tokens_per_step = int(math.ceil(t.batch_size * t.grad_accum * dist.world_size * mean_tgt))
        trainer.task_info = {"train_pairs": len(train), "valid_pairs": len(valid),
                             "dropped_too_long": len(corpus.train) - len(train), "notes": list(corpus.notes)}

    def build_model(self, model_config: Seq2SeqConfig) -> nn.Module:
        return Seq2Seq(model_config)

    def describe(self, trainer) -> tuple[str, str]:
        """(the model, the data) in the words of the start-up line."""
        m, c, tok, info = trainer.model_config, trainer.corpus, trainer.tokenizer, trainer.task_info
        kinds = {m.enc_attention, m.dec_attention, m.cross_attention}
        attention = (f"attention {kinds.pop()}" if len(kinds) == 1 else
                     f"attention {m.enc_attention} / {m.dec_attention} / {m.cross_attention} "
                     "(encoder / decoder / cross)")
        return (f"{m.n_enc_layer} encoder + {m.n_dec_layer} decoder layers, {m.n_head} heads, width {m.n_embd}, "
                f"max length {m.max_len}, {attention}",
                f"data {c.name} {c.src_lang}-{c.tgt_lang} ({info['train_pairs']:,} train / {info['valid_pairs']:,} "
                f"valid sentence pairs, {tok.kind} tokenizer, {tok.vocab_size} tokens)")
