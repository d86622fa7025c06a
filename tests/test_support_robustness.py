"""Perturbations and the clean-vs-perturbed evaluation (seeded, deterministic), and eval-robust."""

from __future__ import annotations

import json

import pytest
import torch

from probattn.cli import main
from probattn.robustness import RobustnessConfig, evaluate_robustness, format_table
from probattn.robustness.perturb import (
    delete,
    gaussian_embedding_noise,
    substitute,
    swap,
)
from probattn.runs import evaluate_tokens, load_run, run_corpus
from probattn.train import apply_overrides, preset_config, train


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_substitution_changes_inputs_only_and_always_to_another_token():
    window = torch.arange(21) % 7
    x, y = substitute(window, 0.0, 7, gen())
    assert torch.equal(x, window[:-1]) and torch.equal(y, window[1:])
    x, y = substitute(window, 1.0, 7, gen())
    assert (x != window[:-1]).all() and ((0 <= x) & (x < 7)).all() and torch.equal(y, window[1:])
    a, _ = substitute(window, 0.3, 7, gen(5))
    b, _ = substitute(window, 0.3, 7, gen(5))
    assert torch.equal(a, b)  # seeded


def test_deletion_keeps_order_and_pairs_each_kept_token_with_its_clean_successor():
    window = torch.arange(50)
    x, y = delete(window, 0.3, 20, gen(1))
    assert x.numel() == 20 and (x[1:] > x[:-1]).all()  # a subsequence, in order
    assert torch.equal(y, x + 1)  # the token that followed it in the clean text
    assert x[-1] > 19  # something was deleted
    assert delete(torch.arange(10), 0.9, 8, gen(0)) is None  # too few survivors: caller's problem


def test_swap_exchanges_disjoint_adjacent_pairs():
    window = torch.arange(41)
    x, y = swap(window, 1.0, gen())
    assert torch.equal(x[:4], torch.tensor([1, 0, 3, 2])) and torch.equal(y, window[1:])
    x, _ = swap(window, 0.2, gen(3))
    assert sorted(x.tolist()) == list(range(40))
    moved = (x != window[:-1]).nonzero().flatten().tolist()
    assert moved and len(moved) % 2 == 0
    for i in moved[::2]:
        assert x[i] == i + 1 and x[i + 1] == i


def test_gaussian_noise_scale():
    emb = torch.zeros(4, 64, 32)
    noisy = gaussian_embedding_noise(emb, 0.5, 2.0, gen())
    assert float(noisy.std()) == pytest.approx(1.0, rel=0.03)
    assert torch.equal(noisy, gaussian_embedding_noise(emb, 0.5, 2.0, gen()))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("robust") / "run"
    cfg = apply_overrides(preset_config("tiny"), {"train": {"max_steps": 30, "eval_interval": 30,
                                                            "eval_batches": 1}})
    train(cfg, path, progress=False)
    return path


def test_clean_scores_match_the_core_evaluator_and_runs_are_deterministic(run_dir):
    run = load_run(run_dir)
    tokens = run.encode(run_corpus(run).valid)
    cfg = RobustnessConfig(sigmas=(0.5, 4.0), rates=(0.1,), max_tokens=32 * 6)
    result = evaluate_robustness(run.model, tokens, cfg)
    ref = evaluate_tokens(run.model, tokens, max_tokens=32 * 6)
    assert result["clean"]["loss"] == pytest.approx(ref["loss"], rel=1e-6)
    assert result["clean"]["acc"] == pytest.approx(ref["acc"])
    assert result == evaluate_robustness(run.model, tokens, cfg)
    noise = {r["level"]: r for r in result["conditions"] if r["kind"] == "embedding_noise"}
    assert noise[4.0]["loss"] > result["clean"]["loss"]
    for r in result["conditions"]:
        assert r["delta_loss"] == pytest.approx(r["loss"] - result["clean"]["loss"])
        assert r["rel_loss"] == pytest.approx(r["delta_loss"] / result["clean"]["loss"])
    assert {r["kind"] for r in result["conditions"]} == {"embedding_noise", "substitute", "delete", "swap"}
    assert "clean" in format_table(result)


def test_eval_robust_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["eval-robust", "--run", str(run_dir), "--sigmas", "0.5", "--rates", "0.05",
                 "--max-tokens", "128", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "embedding_noise 0.5" in captured.out and "substitute 0.05" in captured.out
    data = json.loads(out.read_text())
    assert data["split"] == "valid" and len(data["conditions"]) == 4


@pytest.mark.parametrize("argv,needle", [(["--rates", "1.5"], "rates"),
                                         (["--sigmas", "-1"], "--sigmas must be a positive")])
def test_eval_robust_bad_input(run_dir, tmp_path, capsys, argv, needle):
    code = main(["eval-robust", "--run", str(run_dir), *argv, "--json", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1
    assert not (tmp_path / "x.json").exists()


def test_eval_robust_without_checkpoint(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["eval-robust", "--run", str(tmp_path / "run")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
