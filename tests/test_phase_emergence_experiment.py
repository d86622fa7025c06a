"""The copy-emergence experiment end to end at smoke scale: report, results, reuse of finished
runs, a report from a partial set of runs, bad input."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from probattn.cli import main
from probattn.experiments import ExperimentContext, run_experiment
from probattn.studies.phase.emergence import bimodality
from probattn.studies.phase.emergence import experiment as ex
from probattn.studies.phase.emergence import runs as runs_mod
from probattn.studies.phase.emergence.matching import theory_transition


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("ce") / "smoke"
    result = run_experiment("copy-emergence", ExperimentContext(out_dir=out, scale="smoke", progress=False))
    return out, result


def test_smoke_writes_report_and_typed_results(smoke):
    out, result = smoke
    data = json.loads((out / "results.json").read_text())
    s = ex.SETTINGS["smoke"]
    assert data["runs_done"] == data["runs_total"] == len(ex.plan(s, s.seeds, ex.theory_transitions(s)))
    assert data["missing"] == []
    for key, t in data["theory"].items():  # the P* used is the theory module's
        kind, L = key.split("/")
        assert t["P_star"] == theory_transition(kind, int(L), s.V, s.sigma)["P_star"]
    group = data["arms"]["copy-attn1-softmax"]["groups"][0]
    assert group["P_planned"] == ex.P_grid(data["theory"][f"softmax/{group['L']}"]["P_star"], s.arms[0].k)
    point = next(iter(group["points"].values()))
    assert point["m"]["n"] == len(s.seeds) and 0.0 <= point["m"]["mean"] <= 1.0
    assert len(point["m_curves"][0]) == s.steps // s.log_every + 1
    assert set(data["hysteresis"]) == {"copy-attn1-softmax-copystart", "copy-attn1-linear-copystart",
                                       "copy-attn1-softmax-fine", "induction-attn2-softmax"}
    # the fine grid: its own P values, no threshold, the bimodality split and the share of seeds above
    # the coarse arm's halfway level at every point
    fine_arm = next(a for a in s.arms if a.fine)
    for g in data["arms"][fine_arm.name]["groups"]:
        assert g["threshold"] is None and sorted(map(int, g["points"])) == sorted(fine_arm.Ps)
        coarse = next(c for c in data["arms"]["copy-attn1-softmax"]["groups"]
                      if c["L"] == g["L"] and c["init"] == "default")
        top = max(pt["m"]["mean"] for pt in coarse["points"].values())
        assert g["m_halfway"] == pytest.approx(g["m_uniform"] + 0.5 * (top - g["m_uniform"]))
        for pt in g["points"].values():
            split = bimodality.split_summary(pt["m"]["values"])  # 2 seeds: no coefficient (None in the JSON)
            assert {k: pt["bimodality"][k] for k in ("gap", "n_low", "n_high", "bimodal")} == \
                {k: split[k] for k in ("gap", "n_low", "n_high", "bimodal")}
            assert pt["bimodality"]["bc"] is None and math.isnan(split["bc"])
            assert pt["bimodality"]["p"] is None and math.isnan(split["p"])
            assert pt["share_above_halfway"] == np.mean(np.array(pt["m"]["values"]) > g["m_halfway"])
    assert any("bimodal" in line for line in data["verdict"])
    assert "Bimodality on the fine grid" in (out / "report.md").read_text()
    main_group = next(g for g in data["arms"]["copy-attn1-softmax"]["groups"] if g["L"] == s.L_main)
    assert main_group["threshold"]["P_hat"] is not None  # smoke is sized so the copy head forms on its grid
    assert all(math.isfinite(v) for k, v in data["scaling"]["softmax"].items() if k.startswith("slope"))
    assert any("the copy head appears at P_hat" in line for line in data["verdict"])
    assert (out / "report.html").exists()
    for fig in ("m_vs_P", "bimodality", "m_over_steps", "threshold_vs_L"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
    assert "runs" in result.headline


def test_rerun_reuses_finished_runs(smoke, monkeypatch):
    out, _ = smoke

    def no_training(spec):
        raise AssertionError(f"retrained {spec.run_id}")

    monkeypatch.setattr(runs_mod, "train_run", no_training)
    result = run_experiment("copy-emergence", ExperimentContext(out_dir=out, scale="smoke", progress=False))
    assert result.results["runs_done"] == result.results["runs_total"]


def test_report_only_lists_missing_runs(smoke, tmp_path, monkeypatch):
    out, _ = smoke
    copy = tmp_path / "partial"
    shutil.copytree(out / "cache", copy / "cache")
    removed = sorted((copy / "cache" / "runs").iterdir())[:3]
    for folder in removed:
        shutil.rmtree(folder)
    monkeypatch.setenv("PROBATTN_REPORT_ONLY", "1")
    result = run_experiment("copy-emergence", ExperimentContext(out_dir=copy, scale="smoke", progress=False))
    assert sorted(result.results["missing"]) == sorted(f.name for f in removed)
    assert result.results["runs_done"] == result.results["runs_total"] - 3
    assert result.results["verdict"][0].startswith("Partial: ")
    assert "Missing runs" in (copy / "report.md").read_text()


def test_changed_spec_is_not_reused(tmp_path):
    spec = runs_mod.RunSpec("copy", "attn1", "softmax", 6, 4, 3, 0, steps=3, log_every=1, n_test=4,
                            pretrain_steps=2, batch=2, d_model=8)
    runs_mod.run_all([spec], tmp_path)
    assert runs_mod.load_result(tmp_path, spec) is not None
    other = runs_mod.RunSpec(**{**spec.__dict__, "lr": 0.02})
    assert other.run_id != spec.run_id and runs_mod.load_result(tmp_path, other) is None


def test_bad_scale_and_workers_one_line(tmp_path, capsys, monkeypatch):
    rc = main(["experiment", "copy-emergence", "--scale", "paper", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("probattn: error:") and "no scale 'paper'" in err[0]
    monkeypatch.setenv("PROBATTN_WORKERS", "two")
    rc = main(["experiment", "copy-emergence", "--scale", "smoke", "--out", str(tmp_path / "w"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "PROBATTN_WORKERS must be a positive integer" in err[0]


def test_a_diverged_run_is_recorded_and_does_not_stop_the_sweep(tmp_path, monkeypatch):
    from probattn.errors import TrainingDiverged

    specs = [runs_mod.RunSpec("copy", "attn1", "softmax", 6, 4, P, 0, steps=3, log_every=1, n_test=4,
                              pretrain_steps=2, batch=2, d_model=8) for P in (2, 3)]
    real = runs_mod.train_run

    def flaky(spec):
        if spec.P == 2:
            raise TrainingDiverged("cross-entropy became nan at step 1")
        return real(spec)

    monkeypatch.setattr(runs_mod, "train_run", flaky)
    results = runs_mod.run_all(specs, tmp_path)
    assert runs_mod.diverged(results[specs[0].run_id]) and not runs_mod.diverged(results[specs[1].run_id])
    assert runs_mod.load_result(tmp_path, specs[0])["diverged"].startswith("cross-entropy became nan")
