"""A GPT-2-sized transformers model: forward + backward with each probattn mechanism against the
model's own SDPA attention, and the margin computation's cost over a forward pass, side by side.

    python benchmarks/hf_mechanisms.py                        # GPT-2 small shape (124 M), B=1, T=256, CPU
    python benchmarks/hf_mechanisms.py --seq 128 --repeats 3 --json reports/hf_mechanisms.json

The model is built from ``GPT2Config()`` (random weights: the cost is the shape's, no download).
Each round runs every configuration once, in turn, so drift on a shared machine hits them alike;
the reported time is the median over rounds after one warm-up round, and each ratio divides by
the SDPA baseline of the same rounds. "margins" is :func:`probattn.integrations.hf.margins.hf_margins`
(one forward that records every layer's q and k, then the float32 moments and p x p determinants of
every head and position), compared with a plain no-grad forward; ``benchmarks/hf_margin_costs.py``
sets it beside the float64 reference and the barrier step.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import interleaved_times, medians, write_json  # noqa: E402
from probattn.integrations.hf import use_probattn_attention  # noqa: E402
from probattn.integrations.hf.margins import hf_margins  # noqa: E402

MECHANISMS = {"softmax": {}, "gpam": {}, "diff": {}, "cog": {"softmax_first_last": False}, "linear": {}}


def build(attention: str | None, args):
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head,
                                  attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    cfg._attn_implementation = "sdpa"
    model = transformers.GPT2LMHeadModel(cfg).train()
    if attention is not None:
        use_probattn_attention(model, attention, MECHANISMS[attention])
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--n-layer", type=int, default=12)
    p.add_argument("--n-embd", type=int, default=768)
    p.add_argument("--n-head", type=int, default=12)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randint(0, 50257, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    models = {"sdpa (own)": build(None, args), **{f"probattn {a}": build(a, args) for a in MECHANISMS}}

    def train_step(model):
        def run():
            model.zero_grad(set_to_none=True)
            model(x, labels=x, use_cache=False).loss.backward()
        return run

    own = models["sdpa (own)"]

    def forward():
        with torch.no_grad():
            own(x, use_cache=False)

    steps = {name: train_step(m) for name, m in models.items()}
    steps["forward (no grad)"] = forward
    steps["margins (forward + determinants)"] = lambda: hf_margins(own, x)
    times = interleaved_times(steps, "cpu", args.repeats)
    med = medians(times)
    base, fwd = med["sdpa (own)"], med["forward (no grad)"]
    rows = []
    print(f"GPT-2 shape: {args.n_layer} layers, {args.n_embd} wide, {args.n_head} heads; B={args.batch}, "
          f"T={args.seq}; {args.threads} thread(s), median of {args.repeats} rounds")
    print(f"{'configuration':<36} {'ms':>9} {'ratio':>7}  over")
    for name, t in med.items():
        over, ref = ("forward", fwd) if name.startswith("margins") else (("-", None) if name.startswith("forward")
                                                                         else ("sdpa (own)", base))
        ratio = t / ref if ref else float("nan")
        rows.append({"name": name, "ms": 1e3 * t, "ratio": ratio, "over": over,
                     "ms_all": [1e3 * v for v in times[name]]})
        print(f"{name:<36} {1e3 * t:>9.1f} {ratio:>7.2f}  {over}")
    if args.json:
        out = {"args": vars(args), "torch": torch.__version__, "machine": platform.machine(), "rows": rows}
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
