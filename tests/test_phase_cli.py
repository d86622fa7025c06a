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
    (["--L", "1"], "sequence length L"),
    (["--V", "0"], "vocabulary size V"),
    (["--P-min", "-3"], "--P-min must be a positive"),
    (["--P-max", "0"], "--P-max must be a positive"),
    (["--P-min", "50", "--P-max", "5"], "must be below"),
    (["--kappa", "0"], "kappa must be a positive"),
    (["--sigma-s", "-1"], "sigma_s must be a positive"),
    (["--n-P", "2"], "--n-P must be at least 3"),
])
def test_phase_diagram_bad_input_one_line(tmp_path, capsys, argv, needle):
    rc = main(["phase-diagram", "--out", str(tmp_path / "out"), "--no-figure", *argv])
    err = capsys.readouterr().err
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probattn: error:") and needle in lines[0], err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_phase_diagram_non_numeric_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["phase-diagram", "--L", "ten"])
    assert e.value.code != 0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@needs("arviz", "bayes")
def test_phase_experiment_smoke(tmp_path, capsys):
    rc = main(["experiment", "phase", "--scale", "smoke", "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "report:" in out
    res = json.loads((tmp_path / "results.json").read_text())
    for kind in ("softmax", "linear"):
        for P, post in res["posterior"][kind].items():
            for start in ("zero", "copy"):
                assert post[start]["ess_m"] > 0 and post[start]["rhat_m"] > 0  # diagnostics reported
        assert res["transitions"][kind]["P_star"] > 0
    assert res["transitions"]["linear"]["order"] == "second"
    for name in ("m_vs_P_softmax", "m_vs_P_linear", "landscapes", "P_star_vs_L", "phase_diagram"):
        assert (tmp_path / "figures" / f"{name}.png").exists()
    assert "R-hat" in (tmp_path / "report.md").read_text()


def test_phase_experiment_bad_scale(capsys):
    rc = main(["experiment", "phase", "--scale", "huge"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "no scale 'huge'" in err[0]
