"""Does a learned embedding prior drive the margin-only penalty to zero (or below), and is that
the method or the parametrisation? A measurement, written to a JSON file.

The port's prior: trainable, full-dimensional W_Q, W_K (r = n_embd), margin-only, penalty
min(-log|det J_t|, 30) per token. Variants, all lambda = 0.05 on the embedding placement:

    fixed-smooth      the project's default (fixed seeded r = 8 projections, sign-aware margin)
    learned-abs       the port's form
    learned-smooth    learned full-dimensional prior, sign-aware smooth margin
    learned-one-sided learned full-dimensional prior, one-sided softplus barrier
    learned-abs-unit  the port's form with unit-norm rows (the prior cannot shrink its scores)

Per run it records over training the penalty, ||W_Q||, ||W_K|| and the mean learned-prior
margin; at the end (a) the penalty's decomposition: the learned prior on this model's embeddings,
on the *baseline* model's embeddings (same seed: a model the penalty never touched) and at its
initial W; (b) the fixed reference prior's margins on this model's embeddings (did the model
move?); (c) the share of the penalty gradient's norm that reaches the model rather than W;
(d) clean cost and damage gain at noise 0.5 and 1 x RMS against the baseline.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/support_learned_prior.py \
        --out docs/results/support-learned-prior.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from probattn.io import atomic_write_text
from probattn.report.intervals import interval_summary
from probattn.robustness import RobustnessConfig, evaluate_robustness
from probattn.studies.support_tokens.prior import FIRST_INFORMATIVE, EmbeddingPrior
from probattn.train import apply_overrides, preset_config, train
from probattn.train.trainer import Callback

VARIANTS = {
    "baseline": None,
    "fixed-smooth": {"lam": 0.05},
    "learned-abs": {"lam": 0.05, "projection": "learned", "rank": "full", "form": "abs"},
    "learned-smooth": {"lam": 0.05, "projection": "learned", "rank": "full"},
    "learned-one-sided": {"lam": 0.05, "projection": "learned", "rank": "full", "form": "one_sided"},
    "learned-abs-unit": {"lam": 0.05, "projection": "learned", "rank": "full", "form": "abs", "unit_rows": True},
}


class Keep(Callback):
    """Keeps the trainer (for its final model and objective) and logs the prior over training on
    a fixed probe batch of held-out text (the same 8 windows for every run)."""

    def __init__(self):
        self.rows, self.trainer = [], None

    def on_train_start(self, trainer):
        self.trainer = trainer
        valid = trainer.tokenizer.encode(trainer.corpus.valid)
        starts = torch.randint(0, valid.numel() - 65, (8,), generator=torch.Generator().manual_seed(1234))
        self.probe = torch.stack([valid[s : s + 64] for s in starts])
        prior = getattr(trainer.objective, "prior", None)
        self.initial = None if prior is None else copy.deepcopy(prior)

    def on_eval(self, trainer, step, metrics):
        prior = getattr(trainer.objective, "prior", None)
        if prior is None:
            return None
        with torch.no_grad():
            t = trainer.objective.prior.terms(
                trainer.model.embed(self.probe), trainer.objective.delta, form=trainer.objective.form
            )
        self.rows.append(
            {
                "step": step,
                "penalty_value": float(t.value),
                "mean_margin": float(t.margins.mean()),
                "w_q_norm": float(prior.w_q.detach().norm()),
                "w_k_norm": float(prior.w_k.detach().norm()),
            }
        )
        return None


def penalty(objective, prior, emb) -> float:
    with torch.no_grad():
        return float(prior.terms(emb, objective.delta, form=objective.form).value)


def gradient_share(objective, model, x) -> float:
    """||d P / d model params|| / (||d P / d model|| + ||d P / d W||) at the end of training."""
    model.zero_grad()
    objective.zero_grad()
    t = objective.prior.terms(model.embed(x), objective.delta, form=objective.form)
    t.value.backward()
    gm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters() if p.grad is not None))
    gw = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in objective.parameters() if p.grad is not None))
    model.zero_grad()
    objective.zero_grad()
    return gm / (gm + gw) if gm + gw > 0 else math.nan


def run(args) -> dict:
    base_cfg = apply_overrides(
        preset_config("quick"),
        {
            "model": {"n_layer": 2, "n_head": 4, "n_embd": args.width, "block_size": 64, "dropout": 0.0},
            "train": {
                "max_steps": args.steps,
                "batch_size": 32,
                "lr": 2e-3,
                "min_lr": 2e-4,
                "warmup_steps": 30,
                "eval_interval": 50,
                "eval_batches": 2,
                "log_interval": 50,
                "device": "cpu",
            },
            "data": {"corpus": "default"},
        },
    )
    robust = RobustnessConfig(sigmas=(0.5, 1.0), rates=(0.1,), kinds=(), max_tokens=4096)
    out = {
        "config": {
            "width": args.width,
            "steps": args.steps,
            "seeds": args.seeds,
            "corpus": "default",
            "lam": 0.05,
            "note": "2 layers x 4 heads, context 64, batch 32; the learned priors are full-dimensional (r = width)",
        },
        "runs": {},
    }
    for seed in args.seeds:
        models = {}
        for name, options in VARIANTS.items():
            t0 = time.perf_counter()
            train_over = (
                {"seed": seed}
                if options is None
                else {"seed": seed, "objective": "barrier", "objective_options": options}
            )
            cfg = apply_overrides(base_cfg, {"train": train_over})
            with tempfile.TemporaryDirectory() as d:
                cb = Keep()
                train(cfg, Path(d) / "run", overwrite=True, callbacks=[cb], progress=False)
            model, objective = cb.trainer.model.eval(), cb.trainer.objective
            rob = evaluate_robustness(model, cb.trainer.tokenizer.encode(cb.trainer.corpus.valid), robust)
            rec = {
                "clean_loss": rob["clean"]["loss"],
                "noise_loss": {str(c["level"]): c["loss"] for c in rob["conditions"]},
                "seconds": time.perf_counter() - t0,
            }
            x = cb.probe
            ref = EmbeddingPrior(args.width, rank=8, seed=0)
            with torch.no_grad():
                rec["reference_prior_mean_margin"] = float(
                    ref.margins(model.embed(x), 0.01)[0][..., FIRST_INFORMATIVE:].mean()
                )
            if options is not None:
                emb = model.embed(x).detach()
                rec["over_training"] = cb.rows
                rec["penalty_final"] = penalty(objective, objective.prior, emb)
                rec["penalty_prior_on_baseline_embeddings"] = penalty(
                    objective, objective.prior, models["baseline"].embed(x).detach()
                )
                rec["penalty_initial_prior_on_final_embeddings"] = penalty(objective, cb.initial, emb)
                rec["penalty_initial_prior_on_baseline_embeddings"] = penalty(
                    objective, cb.initial, models["baseline"].embed(x).detach()
                )
                rec["gradient_share_to_model"] = gradient_share(objective, model, x)
            models[name] = model
            out["runs"].setdefault(name, {})[str(seed)] = rec
            print(f"seed {seed} {name}: {rec['seconds']:.0f} s", flush=True)
    # paired summaries against the baseline
    summary = {}
    for name in VARIANTS:
        if name == "baseline":
            continue
        runs, base = out["runs"][name], out["runs"]["baseline"]
        seeds = sorted(runs)
        cost = [(runs[s]["clean_loss"] - base[s]["clean_loss"]) / base[s]["clean_loss"] for s in seeds]
        gains = {}
        for lv in ("0.5", "1.0"):
            gains[lv] = interval_summary(
                [
                    1
                    - (runs[s]["noise_loss"][lv] - runs[s]["clean_loss"])
                    / (base[s]["noise_loss"][lv] - base[s]["clean_loss"])
                    for s in seeds
                ]
            )
        keys = (
            "penalty_final",
            "penalty_prior_on_baseline_embeddings",
            "penalty_initial_prior_on_final_embeddings",
            "penalty_initial_prior_on_baseline_embeddings",
            "gradient_share_to_model",
        )
        summary[name] = {
            "clean_cost": interval_summary(cost),
            "damage_gain": gains,
            "reference_margin_shift": interval_summary(
                [runs[s]["reference_prior_mean_margin"] - base[s]["reference_prior_mean_margin"] for s in seeds]
            ),
            **{k: interval_summary([runs[s][k] for s in seeds]) for k in keys},
            "final_w_norms": [
                [runs[s]["over_training"][-1]["w_q_norm"], runs[s]["over_training"][-1]["w_k_norm"]] for s in seeds
            ]
            if runs[seeds[0]]["over_training"]
            else None,
            "initial_w_norms": [
                [runs[s]["over_training"][0]["w_q_norm"], runs[s]["over_training"][0]["w_k_norm"]] for s in seeds
            ]
            if runs[seeds[0]]["over_training"]
            else None,
        }
    out["summary"] = summary
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    result = run(args)
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
