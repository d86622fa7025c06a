"""Diagnostics against hand computations, the training callback, query-gradient logging and
the ``probattn diagnose`` command (including its bad-input cases)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from probattn.cli import main
from probattn.diagnostics import (
    RankCollapseCallback,
    faithfulness_sweep,
    random_attention_stack,
    rank_collapse,
    residual_profile,
    stack_states,
    token_cosine_similarity,
)
from probattn.diagnostics.rank import token_rms
from probattn.model import GPT, GPTConfig
from probattn.train import apply_overrides, preset_config, train
from probattn.train.metrics import read_jsonl
from probattn.train.trainer import query_grad_norms


# -- formulas on tiny inputs ---------------------------------------------------------------------
def test_rank_collapse_of_rank_one_matrix_is_zero():
    x = torch.ones(5, 1) * torch.tensor([[0.3, -2.0, 7.0]])  # 1 x^T
    assert float(rank_collapse(x)) == pytest.approx(0.0, abs=1e-15)


def test_rank_collapse_hand_computed():
    # mean token (3, 4); residual rows (-2,-2), (0,0), (2,2): ||res|| = 4; ||X||^2 = 91
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert float(rank_collapse(x)) == pytest.approx(4 / math.sqrt(91), rel=1e-12)
    # identity: mean (1/2, 1/2), residual entries +-1/2: ||res|| = 1, ||X|| = sqrt 2
    assert float(rank_collapse(torch.eye(2))) == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    batch = torch.stack([torch.eye(2), torch.ones(2, 2)])
    assert rank_collapse(batch).tolist() == pytest.approx([1 / math.sqrt(2), 0.0])


def test_token_cosine_hand_computed_and_brute_force():
    # pairs: (e1, e2) 0, (e1, e1+e2) 1/sqrt2, (e2, e1+e2) 1/sqrt2 -> mean sqrt(2)/3
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert float(token_cosine_similarity(x)) == pytest.approx(math.sqrt(2) / 3, rel=1e-12)
    assert float(token_cosine_similarity(torch.ones(4, 3) * 2.5)) == pytest.approx(1.0)
    y = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(0))
    for b in range(2):
        cos = [float(torch.nn.functional.cosine_similarity(y[b, i], y[b, j], dim=0))
               for i in range(6) for j in range(6) if i != j]
        assert float(token_cosine_similarity(y)[b]) == pytest.approx(sum(cos) / len(cos), rel=1e-6)
    assert float(token_rms(torch.full((3, 4), -2.0))) == pytest.approx(2.0)


def test_uniform_attention_stack_is_cumulative_mean():
    """W_Q = W_K = 0 gives uniform causal attention; with W_V = W_O = I one layer maps each
    token to the mean of its prefix."""
    stack = random_attention_stack("softmax", 1, 1, 3, block_size=5).double()
    with torch.no_grad():
        stack[0].c_attn.weight.zero_()
        stack[0].c_attn.weight[6:9] = torch.eye(3)
        stack[0].c_proj.weight.copy_(torch.eye(3))
    x = torch.randn(1, 5, 3, dtype=torch.float64)
    out = stack_states(stack, x)[1]
    expected = torch.cumsum(x, dim=1) / torch.arange(1, 6, dtype=torch.float64)[None, :, None]
    torch.testing.assert_close(out, expected)


def test_residual_profile_matches_manual_block_loop():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, block_size=12, n_layer=3, n_head=2, n_embd=16, attention="gpam"))
    idx = torch.randint(0, 7, (2, 12))
    profile = residual_profile(model, idx)
    with torch.no_grad():
        states = [model.embed(idx)]
        for block in model.blocks:
            states.append(block(states[-1]))
    assert profile["rank_collapse"] == pytest.approx([float(rank_collapse(s).mean()) for s in states])
    assert profile["token_cosine"] == pytest.approx([float(token_cosine_similarity(s).mean()) for s in states])


def test_faithful_point_of_sweep_equals_tied_stack():
    sweep = faithfulness_sweep([0.5, 1.0], lam_neg=1.0, n_layer=3, n_head=2, d_model=8, tokens=10, batch=2)
    tied = random_attention_stack("gpam", 3, 2, 8, {"lam": 1.0}, block_size=10, seed=0).double()
    x = torch.randn(2, 10, 8, generator=torch.Generator().manual_seed(1)).double()
    expected = [float(rank_collapse(s).mean()) for s in stack_states(tied, x)]
    assert sweep["profiles"][1]["rank_collapse"] == pytest.approx(expected, rel=1e-12)
    assert len(sweep["softmax"]["rank_collapse"]) == 4


def test_query_grad_norms_include_negative_query_map():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=2, n_head=2, n_embd=8, attention="gpam"))
    idx = torch.randint(0, 7, (2, 8))
    model(idx, idx)[1].backward()
    norms = query_grad_norms(model)
    for l, block in enumerate(model.blocks):
        assert norms[f"grad_norm_q.{l}"] == pytest.approx(float(block.attn.c_attn.weight.grad[:8].norm()))
        assert norms[f"grad_norm_q_extra.{l}"] == pytest.approx(float(block.attn.mechanism.w_q_neg.grad.norm()))
        assert norms[f"grad_norm_q_extra.{l}"] > 0


# -- training callback and the command line ------------------------------------------------------
def tiny_config(attention="gpam", **train_overrides):
    return apply_overrides(preset_config("tiny"), {
        "model": {"attention": attention, "n_layer": 3},
        "train": {"max_steps": 6, "eval_interval": 3, "log_interval": 3, "log_query_grad_norms": True,
                  "device": "cpu", **train_overrides},
    })


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("gpam-run") / "run"
    callback = RankCollapseCallback(n_sequences=2)
    train(tiny_config(), run_dir, overwrite=True, callbacks=[callback], progress=False)
    return run_dir, callback


def test_callback_logs_layers_at_init_and_during_training(trained_run):
    run_dir, callback = trained_run
    records = read_jsonl(run_dir / "metrics.jsonl")
    valid = [r for r in records if r.get("split") == "valid"]
    assert [r["step"] for r in valid] == [0, 3, 6]
    for r in valid:
        assert all(f"rank_collapse.{l}" in r and f"token_cos.{l}" in r and f"pure_rank_collapse.{l}" in r
                   for l in range(4))
    train_rows = [r for r in records if r.get("split") == "train"]
    assert all(f"grad_norm_q.{l}" in r and f"grad_norm_q_extra.{l}" in r for r in train_rows for l in range(3))
    # step 0 is the initial model: rebuild it from the same seed and recompute independently
    cfg = tiny_config()
    torch.manual_seed(cfg.train.seed)
    vocab = json.loads((run_dir / "vocab.json").read_text())
    from probattn.data import tokenizer_from_dict

    model_cfg = GPTConfig(**{**cfg.model.to_dict(), "vocab_size": tokenizer_from_dict(vocab).vocab_size})
    initial = GPT(model_cfg)
    expected = residual_profile(initial, callback.idx)["rank_collapse"]
    assert [valid[0][f"rank_collapse.{l}"] for l in range(4)] == pytest.approx(expected, rel=1e-6)


def test_diagnose_run_writes_json_and_figures(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    out = tmp_path / "diag"
    assert main(["diagnose", "--run", str(run_dir), "--out", str(out), "--sequences", "2"]) == 0
    data = json.loads((out / "diagnostics.json").read_text())
    assert len(data["full_model"]["rank_collapse"]) == 4 and len(data["pure_attention"]["rank_collapse"]) == 4
    assert set(data["grad_norm_q"]) == {"0", "1", "2"}
    assert data["rank_collapse_during_training"]["0"]["steps"] == [0, 3, 6]
    assert data["attention_map"]["negative_fraction"] >= 0
    for name in ("rank_collapse", "attention_map", "grad_norms", "rank_collapse_training"):
        assert (out / f"{name}.png").stat().st_size > 1000
    assert "rank collapse" in capsys.readouterr().out


def test_diagnose_at_init_with_faithfulness_sweep(tmp_path):
    out = tmp_path / "init"
    code = main(["diagnose", "--attention", "gpam", "--preset", "tiny", "--attention-option", "lam=0.5",
                 "--lam-sweep", "0.5,1", "--out", str(out), "--sequences", "2"])
    assert code == 0
    data = json.loads((out / "diagnostics.json").read_text())
    assert data["attention_options"] == {"lam": 0.5}
    assert data["faithfulness"]["lam_pos"] == [0.5, 1.0]
    assert (out / "faithfulness.png").exists() and not (out / "grad_norms.png").exists()


@pytest.mark.parametrize("argv,message", [
    (["--run", "no/such/run"], "run folder not found"),
    (["--attention", "nope"], "unknown attention 'nope'"),
    (["--attention", "gpam", "--attention-option", "lam=-2"], "lam must be >= 0"),
    (["--attention", "diff", "--layer", "9"], "--layer must be in [0, 1]"),
    (["--attention", "gpam", "--lam-sweep", "a,b"], "--lam-sweep must be comma-separated numbers"),
    (["--attention", "gpam", "--lam-sweep", "-1"], "--lam-sweep needs finite values >= 0"),
    (["--attention", "gpam", "--sequences", "0"], "--sequences must be a positive integer"),
    (["--attention", "gpam", "--lam-sweep", "1", "--lam-neg", "-1"], "--lam-neg must be a finite number"),
    (["--attention", "gpam", "--run", "x"], "not allowed with argument"),
    ([], "one of the arguments --run --attention is required"),
])
def test_diagnose_bad_input_is_one_line_and_writes_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    try:
        preset = ["--preset", "tiny"] if "--attention" in argv else []  # --preset is for --attention only
        code = main(["diagnose", *preset, "--out", str(out), *argv])
    except SystemExit as e:  # usage errors end in argparse (one line, exit status 2)
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "error" in err[0] and message in err[0]
    assert not out.exists()


def test_diagnose_run_rejects_init_only_flags(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    code = main(["diagnose", "--run", str(run_dir), "--n-layer", "4", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--n-layer applies to --attention" in err[0]


def test_diagnose_prints_the_attention_map_and_the_faithfulness_sweep(tmp_path, capsys):
    code = main(["diagnose", "--attention", "gpam", "--preset", "tiny", "--attention-option", "lam=0.5",
                 "--sequences", "1", "--lam-sweep", "0,1.5", "--lam-neg", "0.5",
                 "--out", str(tmp_path / "d")])
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "d" / "diagnostics.json").read_text())
    m, sweep = data["attention_map"], data["faithfulness"]
    assert code == 0
    assert (f"attention map of layer {m['layer']}: weights in [{m['min_weight']:.3g}, {m['max_weight']:.3g}], "
            f"{100 * m['negative_fraction']:.1f}% negative") in out
    assert f"random daGPAM stacks of {len(sweep['softmax']['rank_collapse']) - 1} layers, lam- = 0.5" in out
    for lam, profile in zip((0, 1.5), sweep["profiles"]):
        assert f"  lam+ = {lam:g}: {profile['rank_collapse'][-1]:.3g}" in out
    assert f"  softmax stack: {sweep['softmax']['rank_collapse'][-1]:.3g}" in out
