"""The Multi30k translation study on made-up Multi30k files (unit-test data only): the plan and
its order, the tuning seed kept out of the test numbers, runs shared between processes by a
claim, a report from whatever runs exist (listing the missing ones), paired comparisons that
equal the per-seed differences."""

from __future__ import annotations

import json
import math

import pytest

from probattn.experiments import ExperimentContext
from probattn.nmt import multi30k
from probattn.studies.gpam import multi30k_study as study
from probattn.studies.gpam.multi30k_study import TRIO, Design, Group, RunSpec

from .test_nmt_multi30k import make_files

pytest.importorskip("sacrebleu")
pytest.importorskip("tokenizers")

TINY = {"train": {"max_steps": 4, "eval_interval": 2, "patience": 1, "batch_size": 8},
        "data": {"corpus": "multi30k", "vocab_size": 60, "max_words": None}}


def tiny_design(**kw) -> Design:
    groups = (Group("en-de", "pre", TRIO, (0, 1)), Group("en-de", "pre", ("gpam_tuned",), (0, 1)),
              Group("de-en", "pre", TRIO, (0,)))
    return Design("smoke", kw.pop("groups", groups), lam_grid=((1.0, 1.0), (0.5, 1.0)), tune_seed=7, beam=1,
                  bootstrap=20, overrides=TINY, **kw)


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBATTN_DATA", raising=False)
    monkeypatch.setattr(multi30k, "SHA256", make_files(tmp_path / "data" / "multi30k"))
    return tmp_path / "data"


def test_the_plan_trains_the_decisive_runs_first_and_tunes_on_its_own_seed():
    specs = study.planned_runs(study.DESIGNS["multi30k"])
    first = [(s.direction, s.norm, s.variant, s.seed) for s in specs[:9]]
    assert first == [("en-de", "pre", v, seed) for seed in (0, 1, 2) for v in TRIO]
    tune = [s for s in specs if s.tune]
    assert len(tune) == 4 and {s.seed for s in tune} == {100}
    assert specs.index(tune[-1]) < min(i for i, s in enumerate(specs) if s.variant == "gpam_tuned" and not s.tune)
    seeds = study.merged_groups(study.DESIGNS["multi30k"])
    assert seeds[("en-de", "pre")]["softmax"] == (0, 1, 2, 3, 4) and seeds[("en-de", "pre")]["diff"] == (0, 1, 2)
    assert seeds[("de-en", "pre")]["gpam_all"] == (0, 1, 2) and seeds[("en-de", "post")]["softmax_matched"] == (0, 1, 2)
    assert all(100 not in per for g in seeds.values() for per in g.values())
    assert len(specs) == len({s.name for s in specs}) == 15 + 9 + 4 + 9 + 9


def test_a_design_that_would_leak_the_tuning_seed_or_lacks_a_control_is_refused():
    with pytest.raises(ValueError, match="tuning seed"):
        tiny_design(groups=(Group("en-de", "pre", TRIO, (7,)),))
    with pytest.raises(ValueError, match="softmax_matched"):
        Design("smoke", (Group("en-de", "pre", ("softmax", "gpam_all"), (0,)),))


def test_against_the_paper_and_the_last20_rule():
    ci = lambda lo, hi: {"n": 5, "lo": lo, "hi": hi, "mean": (lo + hi) / 2, "std": 1.0}  # noqa: E731
    assert study.against_paper(ci(0.8, 1.5)).startswith("at least +0.71")
    assert study.against_paper(ci(-0.5, 0.6)).startswith("below +0.71")
    assert study.against_paper(ci(0.2, 1.1)).startswith("undecided")
    assert study.against_paper({"n": 1, "lo": math.nan, "hi": math.nan}) == "too few seeds"
    rows = [{"step": s, "loss": v} for s, v in ((0, 5.0), (200, 3.0), (400, 2.5), (600, 2.6), (800, 2.7),
                                                (1000, 2.8))]
    assert study.last20_improvement(rows) == 0  # the best (step 400) came before the last 20 %
    rows[-1]["loss"] = 2.0
    assert study.last20_improvement(rows) == pytest.approx(0.5)


def test_a_claimed_run_is_left_to_its_holder(tmp_path):
    with study.claim(tmp_path / "a") as first:
        assert first
        with study.claim(tmp_path / "a") as second:
            assert not second
        with study.claim(tmp_path / "b") as other:
            assert other
    with study.claim(tmp_path / "a") as again:
        assert again


def test_the_study_end_to_end_and_its_report(data, tmp_path):
    ctx = ExperimentContext(out_dir=tmp_path / "report", scale="multi30k", device="cpu", data_dirs=(str(data),),
                            progress=False)
    design = tiny_design()
    root = tmp_path / "cache" / "runs"
    # nothing trained yet: the report lists every run as missing
    empty = study.run(ctx, design, root, train=False)
    assert empty.results["missing"] and len(empty.results["missing"]) == len(study.planned_runs(design))
    # a run of another process (claimed) is skipped, not waited for
    spec = RunSpec("en-de", "pre", "softmax", 1)
    s = study.Study(design, ctx, root)
    with study.claim(s.run_dir(spec)):
        partial = study.run(ctx, design, root)
    assert spec.name in partial.results["missing"] and len(partial.results["missing"]) == 1
    result = study.run(ctx, design, root)
    text = (tmp_path / "report" / "results.json").read_text()
    res = json.loads(text)
    assert res["missing"] == [] and "missing runs" not in result.headline
    assert str(tmp_path) not in text  # no path of this machine in a report meant to be committed
    assert res["tuned_lambdas"] in ([1.0, 1.0], [0.5, 1.0])
    tuned = [name for name in res["runs"] if "/tune/" in name]
    assert len(tuned) == 2 and all("test" not in res["runs"][n] for n in tuned)  # tuning never sees test
    for rec in res["runs"].values():
        assert rec["train"]["best_step"] is not None and rec["train"]["wall_s"] >= 0
        if "test" in rec:
            assert rec["test"]["sentences"] == 6 and rec["test"]["truncated_sources"] == 0
            assert rec["valid"]["sentences"] == 8
    g = res["groups"]["en-de pre-LN"]
    cmp = g["comparisons"]["gpam_all vs softmax_matched"]
    a = [res["runs"][f"en-de/pre/gpam_all/seed{s}"]["test"]["bleu"] for s in (0, 1)]
    b = [res["runs"][f"en-de/pre/softmax_matched/seed{s}"]["test"]["bleu"] for s in (0, 1)]
    assert cmp["bleu"]["diffs"] == pytest.approx([x - y for x, y in zip(a, b)])
    assert cmp["seeds"] == [0, 1] and len(cmp["bootstrap"]) == 2
    params = {k: res["runs"][f"en-de/pre/{k}/seed0"]["params"] for k in TRIO}
    assert abs(params["softmax_matched"] - params["gpam_all"]) < params["gpam_all"] - params["softmax"]
    assert "gpam_tuned vs softmax" in g["comparisons"]
    assert "de-en pre-LN softmax BLEU" in result.headline
    assert (tmp_path / "report" / "figures" / "en-de_pre.png").exists()
    # finished runs are reused: a second call trains nothing
    before = {p: p.stat().st_mtime_ns for p in root.rglob("scores.json")}
    study.run(ctx, design, root)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("scores.json")} == before
