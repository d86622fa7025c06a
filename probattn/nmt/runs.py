"""Load a translation run, translate texts, score a split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError, DataError
from ..memory import check_fits
from ..model.seq2seq import Seq2Seq
from ..model.seq2seq_config import Seq2SeqConfig
from ..outputs import note_run_inputs
from ..runs import find_checkpoint
from ..train.checkpoint import load_checkpoint, load_state_strict
from .config import TASK, NMTRunConfig
from .decode import translate_ids
from .subword import SubwordTokenizer
from .task import source_batch


@dataclass
class NMTRun:
    run_dir: Path
    model: Seq2Seq
    tokenizer: SubwordTokenizer
    config: NMTRunConfig
    meta: dict[str, Any]
    checkpoint: Path
    device: torch.device


def _run_dir(path: Path) -> Path:
    return path if path.is_dir() else path.parent.parent


def load_nmt_run(run: str | Path, which: str = "best", device: str = "cpu") -> NMTRun:
    """Model, tokenizer and configuration; refuses language-model runs and foreign tokenizers."""
    path = find_checkpoint(run, which)
    meta, payload = load_checkpoint(path)
    saved = meta.get("config", {})
    if saved.get("task") != TASK:
        raise ConfigError(f"{run} is a language-model run, not a translation run (train one with probattn train-nmt)")
    try:
        config = NMTRunConfig.from_dict(saved)
        model_config = Seq2SeqConfig.from_dict(meta["model_config"])
        tokenizer = SubwordTokenizer.from_dict(meta["tokenizer"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} lacks run metadata ({e})") from None
    vocab_file = _run_dir(Path(run)) / "vocab.json"
    if vocab_file.exists():  # the run's tokenizer file must be the one the checkpoint was trained with
        try:
            on_disk = SubwordTokenizer.from_dict(json.loads(vocab_file.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"tokenizer file {vocab_file} is not valid JSON") from None
        if on_disk.fingerprint() != tokenizer.fingerprint():
            raise CheckpointError(f"tokenizer file {vocab_file} does not match the checkpoint {path}")
    if tokenizer.vocab_size != model_config.vocab_size:
        raise CheckpointError(f"tokenizer has {tokenizer.vocab_size} tokens, the model {model_config.vocab_size}")
    model = Seq2Seq(model_config)
    load_state_strict(model, payload["model"], "model", path)
    dev = torch.device(device)
    model.to(dev).eval()
    note_run_inputs(_run_dir(Path(run)), path)
    return NMTRun(_run_dir(Path(run)), model, tokenizer, config, meta, path, dev)


def encode_sources(run: NMTRun, texts: list[str], what: str = "input",
                   truncate: bool = False) -> list[list[int]]:
    """Token ids per sentence; an empty sentence is an error, and so is one beyond the model's
    context unless ``truncate`` (scoring a benchmark split, which must keep every sentence)."""
    limit = run.model.config.max_len - 1  # room for EOS
    ids = run.tokenizer.encode_batch(texts)
    for i, (text, seq) in enumerate(zip(texts, ids), 1):
        if not text.strip():
            raise DataError(f"{what} line {i} is empty")
        if len(seq) > limit and not truncate:
            raise DataError(f"{what} line {i} has {len(seq)} tokens; the model's context is {limit} (max_len "
                            f"{run.model.config.max_len} minus EOS)")
    return [seq[:limit] for seq in ids]


def decoding_bytes(config: Seq2SeqConfig, beam: int, batch_size: int) -> float:
    """Peak bytes of beam search over a batch: per hypothesis its tokens (int64), its scores over
    the vocabulary (float32, and their top-k) and, per decoder layer, the self- and cross-attention
    keys and values of a full-length target and source (float32)."""
    per_hypothesis = (8 * config.max_len + 2 * 4 * config.vocab_size
                      + config.n_dec_layer * 4 * 4 * config.max_len * config.n_embd)
    return beam * batch_size * per_hypothesis


def check_decoding_memory(config: Seq2SeqConfig, beam: int, batch_size: int) -> None:
    check_fits(decoding_bytes(config, beam, batch_size), f"beam search with --beam {beam} over batches of "
               f"{batch_size} sentences", "lower --beam or --batch-size")


def translate(run: NMTRun, texts: list[str], beam: int = 5, length_penalty: float = 1.0,
              batch_size: int = 32, max_new_tokens: int | None = None, what: str = "input",
              truncate: bool = False) -> list[str]:
    """Translations in input order (batches of similar length decode together)."""
    ids = encode_sources(run, texts, what, truncate)
    check_decoding_memory(run.model.config, beam, min(batch_size, len(ids)))
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[str | None] = [None] * len(ids)
    for a in range(0, len(order), batch_size):
        chunk = order[a: a + batch_size]
        src = source_batch([ids[i] for i in chunk]).to(run.device)
        hyps = translate_ids(run.model, src, beam=beam, length_penalty=length_penalty,
                             max_new_tokens=max_new_tokens)
        for i, h in zip(chunk, hyps):
            out[i] = run.tokenizer.decode(h)
    return [o or "" for o in out]


@torch.no_grad()
def split_nll(run: NMTRun, pairs, batch_size: int = 64) -> dict[str, float]:
    """Teacher-forced NLL of the references, nats per target token (EOS included), summed over
    every pair: the smooth quality measure beside BLEU, paired by seed. A side longer than the
    context is cut to it (counted in ``nll_truncated_pairs``), never dropped."""
    from .task import collate, encode_pairs

    room = run.model.config.max_len - 1  # EOS / BOS
    encoded = encode_pairs(run.tokenizer, pairs)
    truncated = sum(len(s) > room or len(t) > room for s, t in encoded)
    encoded = [(s[:room], t[:room]) for s, t in encoded]
    total, tokens = 0.0, 0
    run.model.eval()
    for i in range(0, len(encoded), batch_size):
        (src, tgt_in), tgt_out = collate(encoded[i: i + batch_size])
        logits, _ = run.model(src.to(run.device), tgt_in.to(run.device))
        keep = tgt_out.to(run.device) != run.model.config.pad_id
        logp = torch.log_softmax(logits.double(), dim=-1).gather(-1, tgt_out.to(run.device)[..., None])[..., 0]
        total -= float(logp[keep].sum())
        tokens += int(keep.sum())
    return {"nll": total / max(tokens, 1), "nll_tokens": tokens, "nll_pairs": len(encoded),
            "nll_truncated_pairs": truncated}


def evaluate_split(run: NMTRun, split: str = "valid", beam: int = 5, length_penalty: float = 1.0,
                   limit: int | None = None, batch_size: int = 32, data_dirs=(),
                   test_set: str | None = None) -> dict[str, Any]:
    """Scores of the run's corpus split, every sentence of it (or the first ``limit``): a source
    longer than the model's context is cut to the context and counted in ``truncated_sources``, so
    the BLEU is always over the whole split, never over the sentences that happened to fit.
    ``test_set`` (multi30k) scores another test set than the one the run was configured with."""
    from .bleu import score
    from .task import load_corpus_for

    data = run.config.data
    if test_set is not None and split != "test":
        raise ConfigError("a test set is chosen for the test split only (--split test)")
    if data_dirs or test_set is not None:
        data = type(data)(**{**data.__dict__, "data_dirs": tuple(data_dirs or data.data_dirs),
                             "test_set": test_set if test_set is not None else data.test_set})
    pairs = load_corpus_for(data).split(split)
    if limit:
        pairs = pairs[:limit]
    max_src = run.model.config.max_len - 1
    truncated = sum(len(seq) > max_src for seq in run.tokenizer.encode_batch([s for s, _ in pairs]))
    hyps = translate(run, [s for s, _ in pairs], beam, length_penalty, batch_size, what=split, truncate=True)
    result = score(hyps, [t for _, t in pairs], pretokenized=data.corpus == "iwslt14")
    result.update(split_nll(run, pairs))
    result.update({"split": split, "test_set": data.test_set if split == "test" else None,
                   "sentences": len(pairs), "truncated_sources": truncated,
                   "beam": beam, "length_penalty": length_penalty, "checkpoint": str(run.checkpoint)})
    return result, hyps, pairs
