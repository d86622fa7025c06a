"""The Table-1 study (gpam-deep --scale table1*): row configurations, seeds kept apart for tuning,
pairing over common seeds, and a smoke run end to end: one seed trained, the report listing the
missing runs, a report-only call training nothing, the rest trained, runs kept under the cache."""

from __future__ import annotations

import json
import math

import pytest

from probattn.cli import main
from probattn.report import paired_t_interval
from probattn.studies.gpam import deep_table1 as table1
from probattn.train import preset_config


def test_tuning_seeds_are_not_test_seeds_and_the_main_rows_have_more_seeds():
    for s in table1.TABLE1_SETTINGS.values():
        assert not set(s.tune_seeds) & (set(s.main_seeds) | set(s.other_seeds))
        assert set(s.other_seeds) <= set(s.main_seeds)
    s = table1.TABLE1_SETTINGS["table1"]
    assert len(s.main_seeds) >= 5 and len(s.other_seeds) >= 3 and s.model["n_layer"] == 15
    assert s.train["patience"] and s.train["max_steps"] > 250  # trained to convergence, not 250 steps


def test_row_configurations():
    from probattn.studies.gpam.experiment import count_params

    base = preset_config("quick")
    configs = {row: table1.row_config(base, row, 0.25, 3) for row in table1.ROWS}
    assert {c.model.attention for c in configs.values()} == {"softmax", "gpam", "diff", "diff2", "nap", "non", "coda"}
    assert configs["gpam"].model.attention_options == {"lam": 0.25}
    assert configs["gpam_trainable"].model.attention_options == {"trainable": True}
    assert all(c.train.seed == 3 for c in configs.values())
    gpam, matched = count_params(configs["gpam"].model), count_params(configs["softmax_matched"].model)
    assert abs(matched - gpam) / gpam < 0.01 < (gpam - count_params(configs["softmax"].model)) / gpam


def test_lambda_waits_for_every_grid_point():
    assert table1.choose_lambda([{"lam": 0.5, "tune_loss": 2.0}, {"lam": 1.0, "tune_loss": None}]) is None
    assert table1.choose_lambda([{"lam": 0.5, "tune_loss": 2.0}, {"lam": 1.0, "tune_loss": 1.9}]) == 1.0


def _fake(loss):
    return {"params": 10, "best_step": 7, "test": {"loss": loss}, "tune": {"loss": loss}}


def test_comparison_pairs_over_the_seeds_both_rows_have():
    runs = {row: {} for row in table1.ROWS}
    runs["softmax"] = {0: _fake(2.0), 1: _fake(2.1), 2: _fake(2.3), 3: _fake(9.0)}
    runs["nap"] = {0: _fake(2.5), 1: _fake(2.4), 2: _fake(2.9)}
    r = table1.Table1Results(scale="t", runs_dir="x", data={}, settings=table1.TABLE1_SETTINGS["table1-smoke"],
                             grid=[], lam=None, runs=runs, missing=[])
    ci = r.comparison("nap", "softmax")
    expected = paired_t_interval([0.5, 0.3, 0.6])  # seed 3 has no NAP run: left out, not paired
    assert ci["seeds"] == [0, 1, 2]
    assert (ci["mean"], ci["lo"], ci["hi"]) == pytest.approx((expected["mean"], expected["lo"], expected["hi"]))
    assert r.comparison("coda", "softmax") is None


def test_a_seed_outside_the_plan_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    code = main(["experiment", "gpam-deep", "--scale", "table1-smoke", "--seeds", "7", "--out", str(tmp_path / "r"),
                 "--no-progress", "--data-dir", str(tmp_path / "no-data")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "trains the test seeds 0, 1; got 7" in err[0]
    assert not (tmp_path / "cache" / "runs" / "gpam-deep-table1-smoke" / "tune").exists()  # nothing trained


def test_smoke_study_one_seed_then_the_report_then_the_rest(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "report"
    args = ["experiment", "gpam-deep", "--out", str(out), "--no-progress", "--device", "cpu",
            "--data-dir", str(tmp_path / "no-data")]
    assert main(args + ["--scale", "table1-smoke", "--seeds", "1"]) == 0
    first = json.loads((out / "results.json").read_text())
    runs = tmp_path / "cache" / "runs" / "gpam-deep-table1-smoke"
    assert first["runs_dir"] == str(runs) and not (out / "softmax").exists()  # runs live under the cache
    # seed 1 is a main seed only: softmax, daGPAM and the matched softmax trained; seed 0 missing
    assert {r: v["seeds"] for r, v in first["test_loss"].items() if v["seeds"]} == {
        "softmax": [1], "gpam": [1], "softmax_matched": [1]}
    assert len(first["missing"]) == len(table1.ROWS) and all("seed 0" in m for m in first["missing"])
    assert "Missing runs (9)" in (out / "report.md").read_text()
    best = min(first["lambda_grid"], key=lambda g: g["tune_loss"])
    assert first["chosen_lambda"] == best["lam"] and all(g["seeds"] == [100] for g in first["lambda_grid"])
    stored = json.loads((runs / "gpam" / "seed1" / "measure.json").read_text())
    assert stored["config"]["model"]["attention_options"] == {"lam": best["lam"]}
    assert stored["best_step"] <= stored["steps"] and stored["stopped_early"] in (True, False)

    # the report alone trains nothing and says the same
    before = sorted(p.relative_to(runs) for p in runs.rglob("*"))
    assert main(args + ["--scale", "table1-smoke-report", "--out", str(tmp_path / "alone")]) == 0
    assert sorted(p.relative_to(runs) for p in runs.rglob("*")) == before
    alone = json.loads((tmp_path / "alone" / "results.json").read_text())
    assert (alone["missing"], alone["test_loss"]) == (first["missing"], first["test_loss"])
    assert "not enough runs yet" in capsys.readouterr().out

    # the rest: every row of seed 0; the finished seed-1 runs are reused, not retrained
    stamp = (runs / "softmax" / "seed1" / "measure.json").stat().st_mtime_ns
    assert main(args + ["--scale", "table1-smoke"]) == 0
    done = json.loads((out / "results.json").read_text())
    assert done["missing"] == [] and (runs / "softmax" / "seed1" / "measure.json").stat().st_mtime_ns == stamp
    assert all(v["seeds"] == ([0, 1] if r in table1.MAIN_ROWS else [0]) for r, v in done["test_loss"].items())
    assert set(done["diagnostics"]) == set(table1.ROWS)
    diag = done["diagnostics"]["coda"]
    layers = table1.TABLE1_SETTINGS["table1-smoke"].model["n_layer"]
    assert len(diag["trained"]["pure_rank_collapse"]) == layers + 1 and len(diag["grad_norm_q_mean"]) == layers
    assert all(0 <= x <= 1 for x in diag["trained"]["rank_collapse"])
    assert set(done["random_stacks"]) == set(table1.ROWS)
    ci = done["paired"]["gpam - softmax"]
    diffs = [a - b for a, b in zip(done["test_loss"]["gpam"]["values"], done["test_loss"]["softmax"]["values"])]
    assert ci["mean"] == pytest.approx(sum(diffs) / len(diffs)) and math.isfinite(ci["lo"])
    assert "Every planned run is finished" in (out / "report.md").read_text()
    figures = {"table1_random_stacks", "table1_residual", "table1_pure_trained", "table1_grad_norms"}
    assert {p.stem for p in (out / "figures").glob("*.png")} == figures
