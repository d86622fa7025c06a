"""The phase-diagram command and the phase experiment through the CLI, bad input included."""

import json

import pytest

from probattn.cli import main

from .conftest import needs


def test_phase_diagram_prints_P_star_and_writes_files(tmp_path, capsys):
    rc = main(["phase-diagram", "--L", "64", "--n-P", "40", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "softmax: P* = 10.518 (first order" in out and "linear: P* = 6.406 (second order)" in out
    data = json.loads((tmp_path / "phase_diagram.json").read_text())
    assert data["softmax"]["transition"]["order"] == "first" and len(data["P"]) == 40
    assert (tmp_path / "phase_diagram.png").stat().st_size > 1000


@pytest.mark.parametrize("argv,needle", [
    (["--L", "1"], "--L must be an integer >= 2"),
    (["--V", "0"], "--V must be an integer >= 2"),
    (["--P-min", "-3"], "--P-min must be a positive"),
    (["--P-max", "0"], "--P-max must be a positive"),
    (["--P-min", "50", "--P-max", "5"], "must be below"),
    (["--kappa", "0"], "kappa must be a positive"),
    (["--sigma-s", "-1"], "--sigma-s must be a positive"),
    (["--n-P", "2"], "--n-P must be an integer >= 3"),
])
def test_phase_diagram_bad_input_one_line(tmp_path, capsys, argv, needle):
    rc = main(["phase-diagram", "--out", str(tmp_path / "out"), "--no-figure", *argv])
    err = capsys.readouterr().err
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probattn: error:") and needle in lines[0], err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_phase_diagram_non_numeric_flag_is_one_line(capsys):
    assert main(["phase-diagram", "--L", "ten"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@needs("arviz", "bayes")
def test_phase_experiment_smoke(tmp_path, capsys):
    from dataclasses import fields

    from probattn.studies.phase.experiment import PhaseResults

    rc = main(["experiment", "phase", "--scale", "smoke", "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "report:" in out
    text = (tmp_path / "results.json").read_text()
    res = json.loads(text)
    assert set(res) == {f.name for f in fields(PhaseResults)}  # results.json is the dataclass
    for kind in ("softmax", "linear"):
        for post in res["posterior"][kind].values():
            for start in ("zero", "copy"):
                assert post[start]["ess_m"] > 0 and post[start]["rhat_m"] > 0  # diagnostics reported
        assert res["transitions"][kind]["P_star"] > 0 and res["transitions_entropy"][kind]["P_star"] > 0
        assert res["causal"][kind]["rows"] and res["diagrams"]["sigma_s"][kind]["rows"]
    assert res["transitions"]["linear"]["order"] == "second"
    assert {r["D"] for r in res["d_sweep"]} == {12, 144} and all(r["ess_m"] > 0 for r in res["d_sweep"])
    assert res["factored"]["samples"] and res["full_adam"]
    names = {r["name"] for r in res["scaling"]["table"]}
    assert "V fixed, prior fixed, P in tokens" in names and "V = L, prior var ~ 1/L, P in sequences" in names
    assert res["findings"] and any("D-sweep" in f for f in res["findings"])
    for name in ("m_vs_P_softmax", "m_vs_P_linear", "landscapes", "P_star_vs_L", "phase_diagram", "d_sweep"):
        assert (tmp_path / "figures" / f"{name}.png").exists()
    assert "R-hat" in (tmp_path / "report.md").read_text()
    # a second run resumes from the cache: the same results, nothing recomputed
    rc = main(["experiment", "phase", "--scale", "smoke", "--out", str(tmp_path)])
    assert rc == 0 and capsys.readouterr().out.count("from cache") == 12
    assert json.loads((tmp_path / "results.json").read_text()) == res


def test_phase_experiment_bad_scale(capsys):
    rc = main(["experiment", "phase", "--scale", "huge"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "no scale 'huge'" in err[0]


def test_phase_diagram_grid_draws_lines_and_spinodals(tmp_path, capsys):
    rc = main(["phase-diagram", "--L", "32", "--sigma-s", "0.25", "--kappa", "0.2", "--grid", "P:3:300:30",
               "--grid", "sigma_s:0.1:1:6", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "softmax: first order for sigma_s in [0.1" in out
    d = json.loads((tmp_path / "phase_diagram.json").read_text())
    rows = d["softmax"]["rows"]
    assert d["y_name"] == "sigma_s" and len(rows) == 6 and len(rows[0]["m_star"]) == 30
    first = [r for r in rows if r["order"] == "first"]
    assert first and all(r["spinodals"][0] < r["P_star"] < r["spinodals"][1] for r in first)
    assert rows[-1]["order"] == "crossover" and rows[-1]["crossover_band"] is not None  # past the critical point
    assert all(r["order"] == "second" for r in d["linear"]["rows"])
    assert (tmp_path / "phase_diagram.png").stat().st_size > 1000


@pytest.mark.parametrize("grids,needle", [
    (["sigma_s:0.1:1"], "NAME:LO:HI:N"),
    (["L:1:2:5"], "NAME must be one of"),
    (["sigma_s:1:0.1:5"], "need 0 < LO < HI"),
    (["sigma_s:0.1:1:2"], "N must be at least 3"),
    (["P:1:10:5"], "exactly one scale"),
    (["kappa:0.1:1:4", "sigma_s:0.1:1:4"], "exactly one scale"),
    (["sigma_s:a:1:4"], "must be numbers"),
])
def test_phase_diagram_bad_grid_one_line(tmp_path, capsys, grids, needle):
    argv = ["phase-diagram", "--out", str(tmp_path / "out"), "--no-figure"]
    for g in grids:
        argv += ["--grid", g]
    rc = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(lines) == 1 and lines[0].startswith("probattn: error:") and needle in lines[0], lines
    assert not (tmp_path / "out").exists()
