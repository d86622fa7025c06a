"""Translation: training-step time of probattn's encoder-decoder against ``torch.nn.Transformer``
at the same configuration (softmax), daGPAM over softmax, and beam-search speed with and without
the key/value cache, side by side in one run.

    python benchmarks/translation.py                      # CPU, quick-preset shapes
    python benchmarks/translation.py --device cuda        # GPU (float32; add --bf16 for autocast)

Training step = forward, label-smoothed loss, backward and an AdamW step on one fixed batch of
right-padded source/target token ids. ``torch.nn.Transformer`` gets the same width, heads, layers,
FFN, Pre-LN, ReLU, no dropout, sinusoidal positions, tied embeddings and the same masks (source key
padding, causal target). Times are medians over rounds in which the models take turns, so drift on a
shared machine hits them alike. Beam search runs an untrained model for a fixed number of steps
(``--decode-len``; an untrained model rarely emits EOS), so both decoders do identical work.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import describe_device, interleaved_times, medians, write_json  # noqa: E402
from probattn.model import Seq2Seq, Seq2SeqConfig  # noqa: E402
from probattn.model.seq2seq import sinusoidal_positions  # noqa: E402
from probattn.nmt.decode import beam_search  # noqa: E402

warnings.filterwarnings("ignore", message="enable_nested_tensor")  # Pre-LN: torch explains its own slow path


class TorchTransformer(nn.Module):
    """``nn.Transformer`` with the same embedding, positions and tied output as :class:`Seq2Seq`."""

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd, padding_idx=cfg.pad_id)
        self.register_buffer("pos", sinusoidal_positions(cfg.max_len, cfg.n_embd), persistent=False)
        self.core = nn.Transformer(cfg.n_embd, cfg.n_head, cfg.n_enc_layer, cfg.n_dec_layer, cfg.ffn, dropout=0.0,
                                   activation="relu", batch_first=True, norm_first=cfg.norm == "pre")
        self.out = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.out.weight = self.embed.weight
        self.scale, self.pad = math.sqrt(cfg.n_embd), cfg.pad_id

    def forward(self, src, tgt):
        S, T = src.shape[1], tgt.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=src.device, dtype=torch.bool)
        pad = src == self.pad
        y = self.core(self.embed(src) * self.scale + self.pos[:S], self.embed(tgt) * self.scale + self.pos[:T],
                      tgt_mask=causal, src_key_padding_mask=pad, memory_key_padding_mask=pad, tgt_is_causal=True)
        return self.out(y), None


def batch(cfg: Seq2SeqConfig, B: int, S: int, T: int, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, cfg.vocab_size, (B, S), generator=g)
    tgt = torch.randint(4, cfg.vocab_size, (B, T + 1), generator=g)
    for i in range(B):  # a spread of lengths, right-padded
        src[i, S - (i % (S // 2)):] = cfg.pad_id
        tgt[i, T + 1 - (i % (T // 2)):] = cfg.pad_id
    return src.to(device), tgt[:, :-1].to(device), tgt[:, 1:].to(device)


def train_step_fn(model: nn.Module, data, bf16: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    src, tgt_in, tgt_out = data

    def step():
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
        with ctx:
            logits, _ = model(src, tgt_in)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), tgt_out.reshape(-1),
                                   ignore_index=0, label_smoothing=0.1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=4000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--src-len", type=int, default=24)
    p.add_argument("--tgt-len", type=int, default=24)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--decode-sentences", type=int, default=16)
    p.add_argument("--decode-len", type=int, default=20)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    base = dict(vocab_size=args.vocab, max_len=max(args.src_len, args.tgt_len) + 8, n_enc_layer=args.layers,
                n_dec_layer=args.layers, n_head=args.heads, n_embd=args.width, ffn=args.ffn, dropout=0.0)
    cfgs = {"probattn softmax": Seq2SeqConfig(**base),
            "probattn gpam": Seq2SeqConfig(**base, enc_attention="gpam", dec_attention="gpam", cross_attention="gpam")}
    torch.manual_seed(0)
    models = {k: Seq2Seq(c).to(device) for k, c in cfgs.items()}
    models["torch.nn.Transformer"] = TorchTransformer(cfgs["probattn softmax"]).to(device)
    data = batch(cfgs["probattn softmax"], args.batch, args.src_len, args.tgt_len, device)
    step_times = medians(interleaved_times({k: train_step_fn(m, data, args.bf16) for k, m in models.items()}, device,
                                                   args.rounds, warmup=2))

    src = data[0][: args.decode_sentences]
    dec = {}
    for key in ("probattn softmax", "probattn gpam"):
        model = models[key].eval()
        for cache in (True, False):
            dec[(key, cache)] = (lambda m=model, c=cache: beam_search(m, src, beam=args.beam,
                                                                       max_new_tokens=args.decode_len, use_cache=c))
    with torch.no_grad():
        dec_times = medians(interleaved_times(dec, device, max(3, args.rounds // 3)))

    soft, torch_ref = step_times["probattn softmax"], step_times["torch.nn.Transformer"]
    result = {
        "device": describe_device(device), "config": {**base, "batch": args.batch, "src_len": args.src_len,
                                                      "tgt_len": args.tgt_len, "bf16": args.bf16},
        "train_step_ms": {k: v * 1e3 for k, v in step_times.items()},
        "probattn_softmax_over_torch": soft / torch_ref,
        "gpam_over_softmax": step_times["probattn gpam"] / soft,
        "beam": args.beam, "decode_len": args.decode_len,
        "sentences_per_s": {f"{k} {'cache' if c else 'no cache'}": args.decode_sentences / t
                            for (k, c), t in dec_times.items()},
        "cache_speedup": {k: dec_times[(k, False)] / dec_times[(k, True)]
                          for k in ("probattn softmax", "probattn gpam")},
    }
    print(f"device: {result['device']}")
    print(f"config: {result['config']}")
    for k, v in result["train_step_ms"].items():
        print(f"train step  {k:22s} {v:8.1f} ms")
    print(f"ratio probattn softmax / torch.nn.Transformer: {result['probattn_softmax_over_torch']:.2f}x")
    print(f"ratio probattn gpam / probattn softmax:        {result['gpam_over_softmax']:.2f}x")
    for k, v in result["sentences_per_s"].items():
        print(f"beam {args.beam}, {args.decode_len} steps  {k:28s} {v:8.1f} sentences/s")
    for k, v in result["cache_speedup"].items():
        print(f"cache speed-up {k}: {v:.2f}x")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
