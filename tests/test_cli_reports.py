"""Class: reports that mislead. Throughput from a dozen steps, a paper headline judged from a
smoke run, a clean loss whose tokens are not named."""

import json
import math

import pytest

from probattn.studies.support_tokens.experiment import HEADLINE_SIGMA, NOISE, headline_for
from probattn.train.trainer import Throughput

from .cli_cases import run_cli

FLAGS = ["--preset", "tiny", "--n-layer", "1", "--n-embd", "16", "--batch-size", "2", "--eval-batches", "1",
         "--no-progress"]


@pytest.mark.parametrize("steps, measured", [(3, False), (24, False), (25, True), (60, True)])
def test_throughput_is_timed_after_warm_up_or_not_reported(steps, measured):
    import torch

    t = Throughput(tokens_per_step=64)
    t.start()
    for _ in range(steps):
        t.step(torch.device("cpu"))
    assert t.timed_steps == max(0, steps - Throughput.WARMUP_STEPS)
    assert (t.rate_or_none() is not None) == measured
    assert math.isfinite(t.rate()) == measured


def test_a_short_run_says_its_throughput_was_not_measured(tmp_path, capsys):
    code, out, _ = run_cli(["train", *FLAGS, "--max-steps", "8", "--eval-interval", "4", "--out", tmp_path / "r"],
                           capsys)
    assert code == 0 and "tokens/s not measured (3 steps after warm-up)" in out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["tokens_per_s"] is None and summary["timed_steps"] == 3


def test_a_smoke_baseline_report_leaves_throughput_out(tmp_path, capsys):
    code, _, err = run_cli(["experiment", "baseline", "--scale", "smoke", "--seeds", "0", "--out", tmp_path,
                            "--no-progress"], capsys)
    assert code == 0, err
    report = (tmp_path / "report.md").read_text()
    assert "tokens/s" not in report and "throughput left out: fewer than 100 steps timed" in report
    assert "tokens_per_s" not in json.loads((tmp_path / "results.json").read_text())["summary"]


@pytest.mark.parametrize("scale, words", [("smoke", "not assessed at smoke scale"), ("quick", "MET"),
                                          ("paper", "MET")])
def test_a_smoke_run_never_judges_the_paper_headline(scale, words):
    key = f"{NOISE} {HEADLINE_SIGMA:g}"
    comparisons = {"barrier": {key: {"clean_degradation": [0.001, 0.002], "damage_gain": [0.3, 0.4]}}}
    lines, headline = headline_for(comparisons, scale)
    assert words in lines[0]
    assert ("met" in next(iter(headline.values()))) == (scale != "smoke")


def test_eval_robust_names_the_tokens_of_its_clean_loss(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(["train", *FLAGS, "--max-steps", "4", "--eval-interval", "4", "--out", run], capsys)[0] == 0
    code, out, _ = run_cli(["eval-robust", "--run", run, "--max-tokens", "600", "--sigmas", "0.5", "--rates", "0.1",
                            "--kinds", "swap", "--json", tmp_path / "rob.json"], capsys)
    assert code == 0
    rob = json.loads((tmp_path / "rob.json").read_text())
    n = rob["clean_tokens"]
    assert n == rob["windows"] * rob["block_size"] and n <= 600
    assert f"clean loss over the first {n:,} of {rob['split_tokens']:,} tokens" in out
    assert f"probattn eval --max-tokens {n}" in out
    code, _, _ = run_cli(["eval", "--run", run, "--max-tokens", n, "--json", tmp_path / "ev.json"], capsys)
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["tokens"] == n and ev["loss"] == pytest.approx(rob["clean"]["loss"], rel=1e-6)
