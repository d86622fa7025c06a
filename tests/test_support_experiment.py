"""The support-tokens experiment at smoke scale: trains, evaluates, and writes a full report."""

from __future__ import annotations

import json

from probattn.cli import main
from probattn.experiments import EXPERIMENTS, experiment_module


def test_registered_with_scales():
    assert "support-tokens" in EXPERIMENTS
    mod = experiment_module("support-tokens")
    assert {"smoke", "quick", "paper"} <= set(mod.SCALES)
    assert {0.02, 0.05} <= set(mod.SETTINGS["quick"].lambdas) and len(mod.SETTINGS["quick"].seeds) >= 3
    assert [c.corpus for c in mod.SETTINGS["paper"].corpora] == ["wikitext-2", "tinyshakespeare"]


def test_smoke_run_writes_report(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["experiment", "support-tokens", "--scale", "smoke", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "barrier lam=0.05" in printed and "report:" in printed
    for name in ("report.md", "report.html", "results.json", "figures/noise_default.png",
                 "figures/margins_default.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    corpus = results["corpora"]["default"]
    assert set(corpus["evaluations"]) == {"baseline", "barrier lam=0.02", "barrier lam=0.05"}
    comp = corpus["comparisons"]["barrier lam=0.05"]["embedding_noise 0.5"]
    assert len(comp["clean_degradation"]) == 2  # one per seed
    for ev in corpus["evaluations"]["baseline"].values():
        assert abs(ev["process"]["max_abs_gap"]) < 1e-4
    page = (out / "report.html").read_text()
    assert "Support tokens of held-out text" in page and "<script" not in page
    report = (out / "report.md").read_text()  # seconds of training are no evidence either way
    assert "not assessed at smoke scale" in report and "MET" not in report and "(met)" not in printed


def test_paper_scale_trains_on_wikitext_valid_and_evaluates_on_test(tmp_path):
    """The paper scale's WikiText-2 protocol without the real data: a folder with valid/test only."""
    from probattn.data import load_corpus

    mod = experiment_module("support-tokens")
    folder = tmp_path / "wikitext-2"
    folder.mkdir()
    (folder / "valid.txt").write_text("validation text used for training\n" * 5)
    (folder / "test.txt").write_text("held-out test text\n" * 5)
    spec = mod.SETTINGS["paper"].corpora[0]
    path = mod.find_data_file(*spec.eval_file, (str(tmp_path),))
    corpus = load_corpus(spec.corpus, (str(tmp_path),), valid=path, download=False)
    assert corpus.train.startswith("validation text") and corpus.valid.startswith("held-out test")
    assert "valid" in spec.note and "test" in spec.note  # the report says so
