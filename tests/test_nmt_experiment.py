"""`probattn experiment nmt` at smoke scale on made-up Multi30k files (unit-test data only):
every variant trained per norm and seed, the lambda grid tuned on valid, the matched softmax
really matched, paired differences computed from the per-seed scores."""

from __future__ import annotations

import json

import pytest

from probattn.experiments import ExperimentContext, run_experiment
from probattn.nmt import multi30k
from probattn.studies.gpam.nmt_variants import VARIANTS, count_params, matched_ffn, mechanism_in

from .test_nmt_multi30k import make_files

pytest.importorskip("sacrebleu")


def test_matched_ffn_matches_the_gpam_parameter_count():
    model = dict(n_enc_layer=2, n_dec_layer=2, n_head=2, n_embd=16, ffn=32, max_len=16)
    target = count_params({**model, **VARIANTS["gpam_all"][1]}, 100)
    width = matched_ffn({**model, **mechanism_in("softmax")}, target, 100)
    per_unit = count_params({**model, "ffn": 33}, 100) - count_params({**model, "ffn": 32}, 100)
    assert width > 32 and abs(count_params({**model, "ffn": width}, 100) - target) <= per_unit / 2


def test_smoke_experiment(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(multi30k, "SHA256", make_files(tmp_path / "data" / "multi30k"))
    ctx = ExperimentContext(out_dir=tmp_path / "out", scale="smoke", device="cpu",
                            data_dirs=(str(tmp_path / "data"),), progress=False)
    result = run_experiment("nmt", ctx)
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(res["norms"]) == {"pre", "post"}
    for norm in ("pre", "post"):
        per = res["norms"][norm]
        assert len(per["tuning"]) == 2
        assert set(per["variants"]) == set(VARIANTS)
        for key, v in per["variants"].items():
            assert v["bleu"]["n"] == 2 and 0 <= v["bleu"]["mean"] <= 100 and 0 < v["nll"]["mean"] < 20
            if key != "softmax":
                diffs = v["vs_softmax"]["bleu_diffs"]
                expect = [a - b for a, b in zip(v["bleu"]["values"], per["variants"]["softmax"]["bleu"]["values"])]
                assert diffs == pytest.approx(expect)
                nll = [a - b for a, b in zip(v["nll"]["values"], per["variants"]["softmax"]["nll"]["values"])]
                assert v["vs_softmax"]["nll_diffs"] == pytest.approx(nll)
                assert v["vs_softmax"]["nll_ci"]["mean"] == pytest.approx(sum(nll) / 2)
        params = {k: v["params"] for k, v in per["variants"].items()}
        assert params["gpam_all"] > params["gpam_self"] > params["softmax"]
        assert abs(params["softmax_matched"] - params["gpam_all"]) < params["gpam_all"] - params["softmax"]
    assert (tmp_path / "out" / "report.html").exists() and "pre-LN softmax BLEU" in result.headline
    # a second call reuses the finished runs (nothing retrained: metrics files unchanged)
    metrics = tmp_path / "out" / "runs" / "pre" / "softmax" / "seed0" / "metrics.jsonl"
    before = metrics.stat().st_mtime_ns
    run_experiment("nmt", ctx)
    assert metrics.stat().st_mtime_ns == before


def test_scales_name_known_variants_and_tune_only_with_a_grid():
    from probattn.studies.gpam.nmt_experiment import SETTINGS, Scale

    assert SETTINGS["quick"].variants == ("softmax", "gpam_all", "softmax_matched")
    assert set(SETTINGS["paper"].variants) == set(VARIANTS)
    with pytest.raises(ValueError, match="must include"):
        Scale("quick", {}, (0,), ("pre",), (), 1, None, 10, ("softmax", "gpam_all"))
    with pytest.raises(ValueError, match="lambda grid"):
        Scale("quick", {}, (0,), ("pre",), (), 1, None, 10, ("softmax", "gpam_all", "softmax_matched", "gpam_tuned"))


def test_verdict_needs_the_paired_interval_on_one_side_of_zero():
    from probattn.studies.gpam.nmt_experiment import verdict

    assert verdict([0.5]) == "one seed: no verdict"
    assert verdict([0.5, 0.6, 0.55]) == "better (95 % interval)"
    assert verdict([0.5, 0.6, 0.55], higher_is_better=False) == "worse (95 % interval)"
    # every seed negative, paired t = -2.9, but with 2 degrees of freedom the interval holds zero
    assert verdict([-0.2, -0.5, -0.8]) == "within seed noise"
    assert verdict([0.2, 0.2]) == "better (95 % interval)"
    assert verdict([-1.0, 1.2, 0.1]) == "within seed noise"
