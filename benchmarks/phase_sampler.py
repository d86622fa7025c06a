"""Built-in batched HMC vs NumPyro NUTS on the same 1024-parameter attention posterior.

    PYTHONPATH=. python benchmarks/phase_sampler.py [--chains 4 --warmup 200 --draws 200]

Posterior: the closed-form p(S | D) of the copy task (readout integrated out), softmax attention,
L = V = 32 (S is 32 x 32 = 1024 parameters), P = 16 sequences, sigma_s = 0.5, sigma_w = 1,
kappa = 0.1, chains started at the copy state. Both samplers run the same number of chains,
warmup iterations and kept draws; ESS is ArviZ's bulk ESS per parameter, pooled over chains,
and the score is the minimum over the 1024 parameters divided by the wall time of the whole
run (warmup + sampling; NumPyro's includes its JIT compilation, reported separately as well).
Plain MALA (the built-in sampler with one leapfrog step) is timed too. Also timed: a full theory
phase diagram (160 P values x 24 sigma_s values, both kinds).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--L", type=int, default=32)
    ap.add_argument("--P", type=int, default=16)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--leapfrog", type=int, default=8, help="leapfrog steps per HMC iteration")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch and XLA")
    ap.add_argument("--numpyro-chain-method", default="sequential", choices=("sequential", "vectorized"))
    ap.add_argument("--skip-nuts", action="store_true")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    # XLA reads its thread settings at import: set them before anything imports jax
    os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'} "
                                       f"intra_op_parallelism_threads={args.threads}")
    import numpy as np
    import torch

    from probattn.studies.phase.convergence import summary
    from probattn.studies.phase.posterior import CopyPosterior, copy_state
    from probattn.studies.phase.samplers import hmc, mala
    from probattn.studies.phase.task import make_copy_task
    from probattn.studies.phase.theory import TheoryConfig, phase_diagram

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    L = args.L
    post = CopyPosterior.from_task(make_copy_task(L, L, args.P, seed=0), "softmax", 0.5, 1.0, 0.1)
    init = copy_state(L, "softmax").reshape(1, -1).repeat(args.chains, 1)
    init = init + 0.01 * torch.randn(init.shape, generator=torch.Generator().manual_seed(0), dtype=init.dtype)
    print(f"device: {device} (torch {torch.__version__}, {args.threads} thread(s)); posterior: softmax, "
          f"L = V = {L} ({L * L} parameters), P = {args.P}; {args.chains} chains x ({args.warmup} warmup + "
          f"{args.draws} draws) for each sampler")

    r = hmc(post.to(device).potential, init.to(device), n_warmup=args.warmup, n_draws=args.draws,
            n_leapfrog=args.leapfrog, seed=0)
    s_hmc = summary(r.draws.numpy())
    hmc_rate = s_hmc["min_ess_bulk"] / r.seconds
    rows = [("built-in HMC (batched chains, torch)", s_hmc, r.seconds, hmc_rate,
             f"{args.leapfrog} leapfrog/iter, step {r.step_size:.3g}, accept {r.accept_rate:.2f}, "
             f"{r.n_grad_evals} batched gradients")]

    m = mala(post.to(device).potential, init.to(device), n_warmup=args.warmup, n_draws=args.draws, seed=0)
    s_mala = summary(m.draws.numpy())
    rows.append(("built-in MALA (batched chains, torch)", s_mala, m.seconds, s_mala["min_ess_bulk"] / m.seconds,
                 f"1 gradient/iter, step {m.step_size:.3g}, accept {m.accept_rate:.2f}"))

    nuts_rate = None
    if not args.skip_nuts:
        try:
            from probattn.studies.phase.nuts import nuts
            # compile once on a throwaway run so that its cost is known separately
            t0 = time.perf_counter()
            nuts(post, init.numpy()[:1], n_warmup=2, n_draws=2, chain_method="sequential")
            compile_s = time.perf_counter() - t0
            n = nuts(post, init.numpy(), n_warmup=args.warmup, n_draws=args.draws,
                     chain_method=args.numpyro_chain_method)
            s_nuts = summary(n.draws)
            nuts_rate = s_nuts["min_ess_bulk"] / n.seconds
            rows.append((f"NumPyro NUTS ({args.numpyro_chain_method})", s_nuts, n.seconds, nuts_rate,
                         f"{n.num_steps_mean:.1f} leapfrog/draw, accept {n.accept_rate:.2f}, "
                         f"{n.divergences} divergences; a 2+2 iteration run incl. compile took {compile_s:.1f} s"))
        except Exception as e:  # the extra is optional: say why NUTS is missing and go on
            print(f"NumPyro NUTS skipped: {e}")

    print(f"{'sampler':40s} {'min ESS':>8s} {'max R-hat':>9s} {'seconds':>8s} {'min-ESS/s':>10s}")
    for name, s, secs, rate, note in rows:
        print(f"{name:40s} {s['min_ess_bulk']:8.0f} {s['max_rhat']:9.3f} {secs:8.1f} {rate:10.3f}   {note}")
    if nuts_rate:
        print(f"built-in min-ESS/s / NumPyro NUTS min-ESS/s = {hmc_rate / nuts_rate:.2f}x")

    cfg = TheoryConfig()
    t0 = time.perf_counter()
    phase_diagram(cfg, np.geomspace(0.5, 100, 160))
    print(f"theory phase diagram (L = V = 64, 160 P x 24 sigma_s, both kinds): {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
