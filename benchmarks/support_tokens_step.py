"""Cost of the log-barrier penalty: training-step time with it over the step without it, and peak
memory of the penalty against context length. Everything is measured side by side in one run.

    PYTHONPATH=. python benchmarks/support_tokens_step.py            # CPU: quick preset
    PYTHONPATH=. python benchmarks/support_tokens_step.py --threads 1 --repeats 30

On CUDA (when present) it also times the shakespeare-char preset (bf16 autocast, compiled model).
Variants: baseline cross-entropy; the default barrier (embedding prior, r = 8, exact); every
layer's heads with the default sampling (4 sequences x 16 positions: an unbiased estimate); every
layer's heads on every token (exact, the naive cost). Steps of the variants are interleaved, so
a busy machine slows them alike; the median over repeats is reported.
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics

import torch

from benchmarks.common import cuda_extra_peak_mib, timed, write_json
from probattn.model import GPT
from probattn.studies.support_tokens.objective import BarrierObjective
from probattn.train import preset_config
from probattn.train.objectives import CrossEntropy

VARIANTS = {
    "baseline (cross-entropy)": None,
    "barrier, embedding prior r=8 (default, exact)": {"placement": "embedding"},
    "barrier, every layer, sampled 4 seq x 16 pos": {"placement": "layers"},
    # the naive exact cost: > 10x, so it is timed on fewer repeats (--naive-repeats)
    "barrier, every layer, every token (naive exact)": {"placement": "layers", "sample_sequences": None,
                                                         "sample_positions": None},
}


def build(preset: str, device: torch.device, compile_model: bool):
    cfg = preset_config(preset).model
    cfg = cfg.__class__(**{**cfg.to_dict(), "vocab_size": 96})
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    runner = torch.compile(model) if compile_model else model
    return cfg, model, runner


def make_step(model, runner, options, device, amp: bool):
    objective = (CrossEntropy(model) if options is None else BarrierObjective(model, lam=0.05, **options)).to(device)
    params = list(model.parameters()) + list(objective.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step(x, y):
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast("cpu", enabled=False)
        with ctx:
            loss, _ = objective(runner, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


NAIVE = "barrier, every layer, every token (naive exact)"


def time_steps(preset: str, device: torch.device, repeats: int, warmup: int, naive_repeats: int) -> dict[str, float]:
    on_cuda = device.type == "cuda"
    cfg, model, runner = build(preset, device, compile_model=on_cuda)
    batch = preset_config(preset).train.batch_size
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), generator=g).to(device)
    y = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), generator=g).to(device)
    steps = {name: make_step(model, runner, opts, device, on_cuda) for name, opts in VARIANTS.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(warmup + repeats):
        for name, step in list(steps.items()):  # interleaved: a busy machine slows every variant alike
            if name == NAIVE and (i < warmup - 1 or i >= warmup + naive_repeats):
                continue  # one warm-up step and a few timed ones are enough for a > 10x cost
            try:
                seconds = timed(functools.partial(step, x, y), device)
            except torch.OutOfMemoryError:  # the naive exact barrier on a large GPU preset
                del steps[name]
                times[name] = [math.inf]
                torch.cuda.empty_cache()
                continue
            if i >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(ts) for name, ts in times.items()}


def penalty_memory(T: int, impl: str, device: torch.device, r: int = 8, batch: int = 4) -> float:
    """Peak extra memory (MiB) of one forward + backward of the embedding-prior penalty.

    CUDA: the allocator's peak. CPU: the running sum, in time order, of every operator's own
    allocations minus frees as recorded by ``torch.profiler(profile_memory=True)``, whose
    maximum is the peak of live tensors (frees inside one operator are netted within it).
    """
    from torch.profiler import ProfilerActivity, profile

    from probattn.studies.support_tokens.moments import strict_cov
    from probattn.studies.support_tokens.smooth import smooth_logdet

    g = torch.Generator().manual_seed(0)
    q = torch.randn(batch, 1, T, r, generator=g).to(device).requires_grad_()
    k = torch.randn(batch, 1, T, r, generator=g).to(device).requires_grad_()

    def run():
        cov, _ = strict_cov(q, k, impl=impl)
        (-smooth_logdet(torch.eye(r, device=device) - cov).mean()).backward()

    if device.type == "cuda":
        return cuda_extra_peak_mib(run)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


def memory_table(device: torch.device, lengths: list[int]) -> list[tuple[int, float, float]]:
    return [(T, penalty_memory(T, "fast", device), penalty_memory(T, "reference", device)) for T in lengths]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--naive-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"],
                    help="where to measure (cuda only when present)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "timings": {}, "memory": {}}
    targets = [("quick", torch.device("cpu"), 1.3)] if "cpu" in args.devices else []
    if torch.cuda.is_available() and "cuda" in args.devices:
        targets.append(("shakespeare-char", torch.device("cuda"), 1.15))
    for preset, device, target in targets:
        threads = f"CPU, {torch.get_num_threads()} threads"
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else threads
        print(f"\n== step time, preset {preset!r} on {name} (median of {args.repeats}) ==")
        med = time_steps(preset, device, args.repeats, args.warmup, args.naive_repeats)
        base = med["baseline (cross-entropy)"]
        for variant, t in med.items():
            shown = "out of memory" if math.isinf(t) else f"{1000 * t:9.1f} ms   {t / base:5.2f}x"
            print(f"{variant:<50} {shown}")
        default = med["barrier, embedding prior r=8 (default, exact)"] / base
        print(f"penalty step / baseline step (default placement) = {default:.2f}x (target <= {target}x)")
        results["timings"][f"{preset}/{device.type}"] = {"device": name, "median_s": med, "ratio_default": default}
    for device in [t[1] for t in targets]:
        print(f"\n== peak extra memory of the penalty (fwd+bwd, B=4, r=8) vs context length, {device.type} ==")
        print(f"{'T':>6} {'fast (MiB)':>12} {'T x T reference (MiB)':>22}")
        rows = memory_table(device, args.lengths)
        for T, fast, ref in rows:
            print(f"{T:>6} {fast:>12.1f} {ref:>22.1f}")
        results["memory"][device.type] = rows
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
