"""Batched greedy and beam-search decoding with a key/value cache.

The encoder runs once; each step feeds only the newest target token through the decoder, whose
self-attention appends its keys/values to the cache and whose cross-attention projects the memory
once (``use_cache=False`` re-runs the whole prefix every step: the reference the cache is tested
against). Beam search follows fairseq: every step ranks the 2K best continuations of the K live
hypotheses; an EOS among the first K finishes a hypothesis with score ``log p / length ** alpha``
(length counts the EOS), the best K others stay live; a sentence stops once K hypotheses have
finished, and at the length limit the live ones are finished as they are.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..model.seq2seq import Seq2Seq
from .subword import BOS, EOS, PAD


def _limit(model: Seq2Seq, max_new_tokens: int | None) -> int:
    cap = model.config.max_len  # decoder input positions: BOS + generated tokens
    return cap if max_new_tokens is None else max(1, min(max_new_tokens, cap))


def _step(model: Seq2Seq, tokens: Tensor, memory: Tensor, src_mask: Tensor, cache) -> Tensor:
    """Log-probabilities of the next token after ``tokens`` (B, t)."""
    if cache is None:
        logits = model.decode(tokens, memory, src_mask)
    else:
        logits = model.decode(tokens[:, -1:], memory, src_mask, cache, start=tokens.shape[1] - 1)
    logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
    logp[:, PAD] = logp[:, BOS] = float("-inf")  # never generated (fairseq masks them too)
    return logp


def _strip(seq: list[int]) -> list[int]:
    """Generated tokens up to (without) EOS; PAD fills rows that finished early."""
    out = []
    for t in seq:
        if t in (EOS, PAD):
            break
        out.append(t)
    return out


@torch.no_grad()
def greedy(model: Seq2Seq, src: Tensor, max_new_tokens: int | None = None, use_cache: bool = True) -> list[list[int]]:
    """The most probable token at every step; a finished sentence only receives padding."""
    limit = _limit(model, max_new_tokens)
    memory, src_mask = model.encode(src)
    B = src.shape[0]
    tokens = torch.full((B, 1), BOS, dtype=torch.long, device=src.device)
    finished = torch.zeros(B, dtype=torch.bool, device=src.device)
    cache = model.new_cache() if use_cache else None
    for _ in range(limit):
        nxt = _step(model, tokens, memory, src_mask, cache).argmax(-1)
        nxt = nxt.masked_fill(finished, PAD)
        tokens = torch.cat((tokens, nxt[:, None]), dim=1)
        finished |= nxt == EOS
        if bool(finished.all()):
            break
    return [_strip(row) for row in tokens[:, 1:].tolist()]


def beam_search(model: Seq2Seq, src: Tensor, beam: int = 5, length_penalty: float = 1.0,
                max_new_tokens: int | None = None, use_cache: bool = True) -> list[list[int]]:
    """The best finished hypothesis per source sentence (without BOS, EOS and padding)."""
    best = beam_search_scored(model, src, beam, length_penalty, max_new_tokens, use_cache)
    return [_strip(tokens) for _, tokens in best]


@torch.no_grad()
def beam_search_scored(model: Seq2Seq, src: Tensor, beam: int = 5, length_penalty: float = 1.0,
                       max_new_tokens: int | None = None, use_cache: bool = True) -> list[tuple[float, list[int]]]:
    """``(length-normalised log-probability, raw generated tokens incl. EOS)`` of each best hypothesis."""
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    limit = _limit(model, max_new_tokens)
    B, K, dev = src.shape[0], beam, src.device
    memory, src_mask = model.encode(src)
    memory, src_mask = memory.repeat_interleave(K, 0), src_mask.repeat_interleave(K, 0)
    tokens = torch.full((B * K, 1), BOS, dtype=torch.long, device=dev)
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: only the first may expand
    cache = model.new_cache() if use_cache else None
    done: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    for step in range(limit):
        logp = _step(model, tokens, memory, src_mask, cache)  # (B*K, V)
        V = logp.shape[-1]
        cand = (scores[:, :, None] + logp.view(B, K, V)).view(B, K * V)
        top_scores, top_idx = cand.topk(min(2 * K, K * V), dim=1)
        top_beam, top_tok = top_idx // V, top_idx % V
        length = step + 1  # generated tokens including this one
        next_beam = torch.zeros(B, K, dtype=torch.long)
        next_tok = torch.full((B, K), PAD, dtype=torch.long)
        next_scores = torch.full((B, K), float("-inf"))
        ts, tb, tt = top_scores.tolist(), top_beam.tolist(), top_tok.tolist()
        for b in range(B):
            if len(done[b]) >= K:
                continue  # this sentence has stopped; its rows idle with -inf scores
            alive = 0
            for rank, (s, j, tok) in enumerate(zip(ts[b], tb[b], tt[b])):
                if s == float("-inf"):
                    break
                if tok == EOS:
                    if rank < K:
                        prefix = tokens[b * K + j, 1:].tolist() + [EOS]
                        done[b].append((s / length ** length_penalty, prefix))
                    continue
                if alive < K:
                    next_beam[b, alive], next_tok[b, alive], next_scores[b, alive] = j, tok, s
                    alive += 1
            if len(done[b]) >= K:
                next_scores[b] = float("-inf")
        rows = (torch.arange(B)[:, None] * K + next_beam).view(-1).to(dev)
        tokens = torch.cat((tokens.index_select(0, rows), next_tok.view(-1, 1).to(dev)), dim=1)
        scores = next_scores.to(dev)
        if cache is not None:
            # rows stay within their sentence, whose cross-attention cache rows are identical
            for layer in cache:
                layer["self"] = {n: t.index_select(0, rows) for n, t in layer["self"].items()}
        if all(len(d) >= K for d in done):
            break
    final_scores = scores.tolist()
    for b in range(B):
        if len(done[b]) < K:  # the length limit: live hypotheses finish as they are
            for j in range(K):
                if final_scores[b][j] != float("-inf"):
                    n = tokens.shape[1] - 1
                    done[b].append((final_scores[b][j] / n ** length_penalty, tokens[b * K + j, 1:].tolist()))
    return [max(d, key=lambda h: h[0]) if d else (float("-inf"), []) for d in done]


def translate_ids(model: Seq2Seq, src: Tensor, beam: int = 1, **kwargs) -> list[list[int]]:
    """Greedy for ``beam == 1`` (the same result as a one-wide beam, faster), else beam search."""
    if beam == 1:
        kwargs.pop("length_penalty", None)
        return greedy(model, src, **kwargs)
    return beam_search(model, src, beam=beam, **kwargs)
