"""The ``gpam`` experiment end to end at smoke scale, and its pieces (parameter matching,
paired verdicts)."""

from __future__ import annotations

import json

import pytest

from probattn.cli import main
from probattn.experiments import describe_experiments
from probattn.experiments.common import paired_differences, per_seed_rows, speed_ratio
from probattn.runs import load_run, run_corpus
from probattn.studies.gpam import deep_experiment as gpam_deep
from probattn.studies.gpam import experiment as gpam_experiment
from probattn.train import apply_overrides, preset_config


def test_paired_helpers_pair_by_seed_and_refuse_unequal_lengths():
    assert paired_differences([1.5, 2.0, 0.25], [1.0, 2.5, 0.25]) == [0.5, -0.5, 0.0]
    with pytest.raises(ValueError, match="paired by seed: 2 values against 3"):
        paired_differences([1.0, 2.0], [1.0, 2.0, 3.0])  # never cut to the shorter list
    assert per_seed_rows((7, 9), [[0.1, 0.2], ["a", "b"]]) == [[7, 0.1, "a"], [9, 0.2, "b"]]
    assert speed_ratio([300.0, 100.0], [100.0, 100.0, 100.0]) == "2.00x"  # means, not sums


def test_matched_baseline_has_the_parameter_count_of_dagpam():
    base = apply_overrides(preset_config("quick"), {"model": gpam_experiment.SETTINGS["quick"].model})
    configs = gpam_experiment.variant_configs(base)
    target, matched, plain = (gpam_experiment.count_params(configs[k].model)
                              for k in ("gpam_trainable", "softmax_matched", "softmax"))
    # daGPAM adds H d^2 = C d per layer (W_Q-) plus one lambda per layer; the MLP width absorbs it
    m = configs["softmax"].model
    assert target - plain == m.n_layer * (m.n_embd * m.head_dim + 1)
    assert abs(matched - target) <= 2 * m.n_embd  # within one MLP unit
    assert abs(matched - target) / target < 1e-3
    assert configs["softmax_matched"].model.mlp_hidden == 4 * m.n_embd + m.head_dim // 2


def test_matched_width_does_not_depend_on_the_vocabulary():
    widths = set()
    for vocab in (7, 256):
        base = apply_overrides(preset_config("quick"), {"model": {**gpam_experiment.SETTINGS["quick"].model,
                                                                  "vocab_size": vocab}})
        widths.add(gpam_experiment.variant_configs(base)["softmax_matched"].model.mlp_hidden)
    assert len(widths) == 1


def test_paired_verdict_words():
    assert gpam_experiment.paired_verdict([-0.02, -0.021, -0.019]) == "lower on every seed"
    assert gpam_experiment.paired_verdict([0.02, 0.021, 0.019]) == "higher on every seed"
    assert gpam_experiment.paired_verdict([-0.02, 0.01, -0.005]) == "within seed noise"
    assert gpam_experiment.paired_verdict([-0.02]) == "within seed noise"


def test_gpam_experiment_is_registered():
    entry = {name: scales for name, _, scales in describe_experiments()}["gpam"]
    assert entry[0] == "quick" and "smoke" in entry and "paper" in entry


def test_smoke_run_writes_report_with_all_variants(tmp_path, capsys):
    out = tmp_path / "gpam"
    assert main(["experiment", "gpam", "--scale", "smoke", "--out", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "daGPAM vs softmax" in printed and "report:" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["val_loss_full_split"]) == set(gpam_experiment.VARIANTS)
    assert all(v["n"] == 2 for v in results["val_loss_full_split"].values())
    assert results["params"]["softmax_matched"] == pytest.approx(results["params"]["gpam_trainable"], rel=2e-3)
    assert set(results["deep_lm"]["test_word_ppl"]) == set(gpam_deep.VARIANTS)  # the trained deep models
    assert "Trained deep language models" in (out / "report.md").read_text()
    assert len(results["deep"]["profiles"]["softmax (init)"]["rank_collapse"]) == 5  # 4 layers + input
    assert len(results["faithfulness"]["lam_pos"]) == 3
    assert all(0 < lam < 2 for lams in results["learned_lambdas"].values() for lam in lams)
    # parameter counts are the trained models' own, whose vocabulary is the corpus's
    run = load_run(out / "runs" / "softmax" / "seed0")
    corpus = run_corpus(run)
    assert run.model.config.vocab_size == len(set(corpus.train + corpus.valid))
    assert results["params"]["softmax"] == run.model.num_params()
    report = (out / "report.md").read_text()
    # the report renders the same numbers results.json holds
    softmax_loss = results["val_loss_full_split"]["softmax"]
    row = f"| softmax | {results['params']['softmax']:,} | {softmax_loss['mean']:.4f} ± {softmax_loss['std']:.4f}"
    assert row in report
    assert "Does daGPAM help here?" in report and "108.26" in report
    assert results["tokens_per_s"] is None and "n/a: fewer than 100 steps timed" in report
    for name in ("loss_curves", "attention_maps", "deep_rank_collapse", "grad_norms", "faithfulness",
                 "random_stacks"):
        assert (out / "figures" / f"{name}.png").exists()
