"""The "barrier" objective: gradients reach the model, stay finite past the boundary, sampling is
unbiased, the full prior is the change-of-variables density, and it trains through the trainer."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from probattn.errors import ConfigError
from probattn.model import GPT, GPTConfig
from probattn.studies.support_tokens.attention_map import CausalAttentionMap, apply_map
from probattn.studies.support_tokens.moments import strict_cov
from probattn.studies.support_tokens.objective import BarrierObjective, BarrierOptions
from probattn.studies.support_tokens.prior import (
    FIRST_INFORMATIVE,
    EmbeddingPrior,
    barrier_values,
    draw_subset,
    informative,
    strict_margins,
)
from probattn.train import apply_overrides, build_objective, preset_config, train
from probattn.train.metrics import read_jsonl

from .cli_cases import one_error_line, run_cli
from .support_cases import DT


def tiny_gpt(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=13, block_size=12, n_layer=2, n_head=2, n_embd=16)).to(dtype)


def batch(B=3, T=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 13, (B, T), generator=g), torch.randint(0, 13, (B, T), generator=g)


def penalty_grads(model, objective, x, y):
    _, _, terms = objective.terms(model, x, y)
    model.zero_grad()
    terms.value.backward()
    return {n: p.grad for n, p in model.named_parameters()}


def test_options_declare_each_default_once_and_the_placement_picks_the_sampling():
    o = BarrierOptions()
    assert (o.lam, o.placement, o.rank, o.prior, o.delta, o.form, o.cap, o.layers) == \
        (0.05, "embedding", 8, "margin", 0.01, "smooth", None, None)
    exact = BarrierObjective(tiny_gpt())
    assert exact.options == o and (exact.sample_sequences, exact.sample_positions, exact.eval_sequences) == \
        (None, None, None)
    layers = BarrierObjective(tiny_gpt(), placement="layers")
    assert (layers.sample_sequences, layers.sample_positions, layers.eval_sequences) == (4, 16, 4)
    chosen = BarrierObjective(tiny_gpt(), placement="layers", sample_sequences=None, eval_sequences=2)
    assert (chosen.sample_sequences, chosen.sample_positions, chosen.eval_sequences) == (None, 16, 2)
    assert isinstance(BarrierOptions(lam=1).lam, float)  # JSON "1" where a real number is meant
    for bad, message in (({"lam": -1}, "lam must be a finite number >= 0, got -1"),
                         ({"rank": 0}, 'rank must be a positive integer or "full", got 0'),
                         ({"sample_positions": 2.5}, "sample_positions must be a positive integer"),
                         ({"layers": [True]}, "layers must list layer indices"),
                         ({"cap": 1.0, "form": "abs"}, "cap applies to form=smooth only")):
        with pytest.raises(ConfigError, match="objective option " + message.replace("(", r"\(")):
            BarrierOptions(**bad)


def test_a_bad_option_on_the_command_line_is_one_error_line_and_nothing_written(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "--preset", "quick", "--objective", "barrier", "--objective-option",
                            "placement=nowhere", "--out", out, "--max-steps", "1"], capsys)
    line = one_error_line(err)
    assert code != 0 and "objective option placement must be one of embedding, layers" in line
    assert not out.exists()


def test_registered_and_options_validated():
    model = tiny_gpt()
    assert isinstance(build_objective("barrier", {"lam": 0.02}, model), BarrierObjective)
    learned = build_objective("barrier", {"projection": "learned", "rank": "full"}, model)
    assert learned.prior.w_q.shape == (16, 16) and learned.prior.w_q.requires_grad  # the port's prior
    for bad in ({"placement": "nowhere"}, {"lam": -1}, {"layers": [5]}, {"sample_positions": 0},
                {"prior": "full", "placement": "layers"}, {"delta": 0}, {"form": "hinge"},
                {"form": "abs", "cap": 1.0}, {"width": 0}, {"form": "one_sided", "prior": "full"},
                {"unit_rows": True}, {"rank": "half"}):
        with pytest.raises(ConfigError):
            build_objective("barrier", bad, model)
    with pytest.raises(ConfigError, match="no option"):
        build_objective("barrier", {"lambda": 0.1}, model)


def test_embedding_prior_is_fixed_and_its_gradient_reaches_the_embeddings():
    model = tiny_gpt()
    objective = BarrierObjective(model, placement="embedding")
    assert list(objective.parameters()) == []  # fixed projections: nothing of the prior is trained
    assert {"prior.w_q", "prior.w_k"} <= set(objective.state_dict())  # ... but they are checkpointed
    grads = penalty_grads(model, objective, *batch())
    for name in ("wte.weight", "wpe.weight"):
        assert grads[name] is not None and grads[name].abs().max() > 0, name
    assert all(g is None for n, g in grads.items() if n.startswith("blocks."))


def test_layers_prior_gradient_reaches_attention_layernorm_and_embeddings():
    model = tiny_gpt()
    objective = BarrierObjective(model, placement="layers", sample_sequences=None, sample_positions=None)
    grads = penalty_grads(model, objective, *batch())
    for name in ("blocks.0.attn.c_attn.weight", "blocks.1.attn.c_attn.weight", "blocks.0.ln_1.weight",
                 "blocks.1.ln_1.weight", "wte.weight", "wpe.weight"):
        assert grads[name] is not None and grads[name].abs().max() > 0, name


@pytest.mark.parametrize("placement,param,index", [("embedding", "wte.weight", (3, 2)),
                                                   ("layers", "blocks.1.attn.c_attn.weight", (20, 5))])
def test_penalty_gradient_matches_finite_differences(placement, param, index):
    model = tiny_gpt(DT)
    objective = BarrierObjective(model, placement=placement, sample_sequences=None, sample_positions=None).double()
    x, y = batch()
    grad = penalty_grads(model, objective, x, y)[param][index]
    p = dict(model.named_parameters())[param]
    h = 1e-6
    with torch.no_grad():
        p[index] += h
        up = objective.terms(model, x, y)[2].value
        p[index] -= 2 * h
        down = objective.terms(model, x, y)[2].value
        p[index] += h
    assert float(grad) == pytest.approx(float((up - down) / (2 * h)), rel=1e-5, abs=1e-9)


def test_cap_penalises_only_tokens_below_it():
    m = torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0])
    torch.testing.assert_close(barrier_values(m), -m)
    torch.testing.assert_close(barrier_values(m, cap=0.5), torch.tensor([2.5, 1.0, 0.5, 0.0, 0.0]))
    model = tiny_gpt()
    x, y = batch()
    pure = penalty_grads(model, BarrierObjective(model), x, y)["wte.weight"].clone()
    high = penalty_grads(model, BarrierObjective(model, cap=1e9), x, y)["wte.weight"]
    torch.testing.assert_close(high, pure)  # every token below the cap: the pure barrier's gradient
    low = BarrierObjective(model, cap=-1e9)
    assert float(low.terms(model, x, y)[2].value.detach()) == 0.0
    assert penalty_grads(model, low, x, y)["wte.weight"].abs().max() == 0


def test_learned_projections_alone_can_zero_a_margin_only_penalty():
    """Why projection=learned needs the full prior: at W_Q = W_K = 0 every margin is 0 and the
    penalty exerts no force on the model, whatever the model is."""
    for seed in (0, 1):
        model = tiny_gpt(seed=seed)
        prior = EmbeddingPrior(16, rank=8, learned=True)
        with torch.no_grad():
            prior.w_q.zero_()
            prior.w_k.zero_()
        terms = prior.terms(model.embed(batch()[0]), delta=0.01)
        assert float(terms.value.detach()) == 0.0
        terms.value.backward()
        assert float(model.wte.weight.grad.abs().max()) == 0.0


def test_full_prior_is_the_change_of_variables_density():
    """value = mean_t ||e_t||^2 / (2 sigma^2) - log det J_t with e and J from the map itself."""
    g = torch.Generator().manual_seed(0)
    prior = EmbeddingPrior(6, rank=3, learned=True, normalize=False).double()
    emb = torch.randn(2, 7, 6, generator=g, dtype=DT)
    sigma = 0.7
    terms = prior.terms(emb, delta=1e-6, full=True, sigma=sigma)
    amap = CausalAttentionMap(prior.w_q.detach()[None], prior.w_k.detach()[None], mask="strict")
    expected = []
    for b in range(2):
        e = apply_map(amap, emb[b])
        jac = torch.autograd.functional.jacobian(lambda u: apply_map(amap, u), emb[b])
        logdet = torch.stack([torch.linalg.slogdet(jac[t, :, t, :]).logabsdet for t in range(7)])
        expected.append((e**2).sum(-1) / (2 * sigma**2) - logdet)
    assert float(terms.value.detach()) == pytest.approx(float(torch.stack(expected).mean()), rel=1e-10)


@pytest.mark.parametrize("form", ["smooth", "abs", "one_sided"])
def test_loss_and_gradients_finite_up_to_and_past_the_boundary(form):
    """Scale a prior so that its C_t cross the boundary: loss and every gradient stay finite."""
    model = tiny_gpt()
    objective = BarrierObjective(model, lam=0.05, form=form)
    x, y = batch()
    crossed = False
    for c in (1.0, 3.0, 10.0, 30.0):
        with torch.no_grad():  # W_K = c W_Q makes C_t = c Cov_a(q) / sqrt(r) (PSD): det(I - C_t) -> 0 and < 0
            objective.prior.w_k.copy_(c * objective.prior.w_q)
        u = objective.prior.inputs(model.embed(x))
        q, k = objective.prior.qk(u)
        cov, _ = strict_cov(q.double(), k.double())
        dets = torch.linalg.det(torch.eye(8, dtype=DT) - cov)
        crossed |= bool((dets < 0).any())
        model.zero_grad()
        loss, metrics = objective(model, x, y)
        loss.backward()
        assert math.isfinite(float(loss.detach()))
        for n, p in model.named_parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), n
        assert model.wte.weight.grad.abs().max() > 0
    assert crossed, "the sweep must reach det < 0"
    if form != "abs":  # abs ignores the sign: its margin is log|det|
        assert float(objective.eval_metrics(model, x, y)["min_margin"]) < math.log(0.01)


def test_unit_rows_make_the_learned_prior_scale_free():
    """With unit_rows the prior cannot shrink its own scores: scaling W changes no margin."""
    model = tiny_gpt()
    emb = model.embed(batch()[0])
    prior = EmbeddingPrior(16, rank=16, learned=True, unit_rows=True)
    before = prior.margins(emb, 0.01)[0]
    with torch.no_grad():
        prior.w_q.mul_(1e-3)
        prior.w_k.mul_(7.0)
    torch.testing.assert_close(prior.margins(emb, 0.01)[0], before)


def test_subsampled_penalty_is_unbiased_by_enumeration():
    """The estimator the objective uses (sequences, then positions t >= 2, uniformly without
    replacement): its mean over every equally likely draw is the exact mean."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(3, 2, 5, 3, generator=g, dtype=DT), torch.randn(3, 2, 5, 3, generator=g, dtype=DT)
    exact = informative(strict_margins(q, k, 0.01)[0], None).mean()
    estimates = []
    pos_sets = list(itertools.combinations(range(FIRST_INFORMATIVE, 5), 2))
    for rows in itertools.combinations(range(3), 2):
        for pos in itertools.product(pos_sets, repeat=2):
            positions = torch.tensor(pos)
            m, _ = strict_margins(q, k, 0.01, torch.tensor(rows), positions)
            estimates.append(informative(m, positions).mean())
    assert len(estimates) == 27
    assert float(torch.stack(estimates).mean()) == pytest.approx(float(exact), rel=1e-12)


def test_draw_subset_is_uniform_without_replacement():
    g = torch.Generator().manual_seed(0)
    counts_rows, counts_pos = torch.zeros(6), torch.zeros(10)
    n = 3000
    for _ in range(n):
        rows, pos = draw_subset(6, 10, 2, 3, generator=g, first=2)
        assert rows.unique().numel() == 2 and all(p.unique().numel() == 3 for p in pos)
        counts_rows[rows] += 1
        counts_pos += torch.bincount(pos.flatten(), minlength=10)
    torch.testing.assert_close(counts_rows / n, torch.full((6,), 2 / 6), atol=0.03, rtol=0)
    assert counts_pos[:2].sum() == 0  # positions 0 and 1 carry no margin and are never drawn
    torch.testing.assert_close(counts_pos[2:] / (2 * n), torch.full((8,), 3 / 8), atol=0.03, rtol=0)
    assert draw_subset(6, 10, None, None) == (None, None)


@pytest.mark.parametrize("placement", ["embedding", "layers"])
def test_trains_and_logs_penalty_and_min_margin(tmp_path, placement):
    cfg = apply_overrides(preset_config("tiny"), {
        "train": {"max_steps": 4, "eval_interval": 2, "eval_batches": 1, "log_interval": 2,
                  "objective": "barrier", "objective_options": {"lam": 0.05, "placement": placement}},
        "model": {"n_embd": 16, "block_size": 16}})
    result = train(cfg, tmp_path / placement, progress=False)
    records = read_jsonl(tmp_path / placement / "metrics.jsonl")
    valid = [r for r in records if r.get("split") == "valid"]
    trained = [r for r in records if r.get("split") == "train"]
    assert valid and trained
    for key in ("loss", "penalty", "barrier", "min_margin", "mean_margin"):
        assert all(math.isfinite(r[key]) for r in valid), key
    assert all(r["min_margin"] <= r["mean_margin"] for r in valid)
    assert all({"ce", "penalty"} <= set(r) for r in trained)
    assert math.isfinite(result.best_val_loss)


def test_layer_placement_evaluates_margins_exactly_on_its_first_sequences():
    from probattn.model import GPT, GPTConfig
    from probattn.studies.support_tokens.gpt import hook_qk
    from probattn.studies.support_tokens.prior import layer_terms

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    x = torch.randint(0, 20, (6, 16), generator=torch.Generator().manual_seed(0))
    y = torch.roll(x, -1, dims=1)
    full_logits, _ = model(x)
    for eval_sequences, rows in ((2, slice(0, 2)), (None, slice(None))):
        objective = BarrierObjective(model, lam=0.1, placement="layers", eval_sequences=eval_sequences)
        metrics = objective.eval_metrics(model, x, y)
        _, qk = hook_qk(model, x[rows])
        expected = layer_terms(qk, [0, 1], objective.delta, objective.scale)
        torch.testing.assert_close(metrics["min_margin"], expected.margins.min())
        torch.testing.assert_close(metrics["penalty"], 0.1 * expected.value)
        ce = torch.nn.functional.cross_entropy(full_logits.flatten(0, 1), y.flatten())
        torch.testing.assert_close(metrics["loss"], ce)
