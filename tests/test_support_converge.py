"""The convergence scale of the support-tokens study: three-way splits, the convergence record,
the class- and frequency-matched control, and a resumable smoke run with its missing-run list."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from probattn.data.corpora import load_corpus
from probattn.model import GPT, GPTConfig
from probattn.studies.support_tokens import study
from probattn.studies.support_tokens.convergence import convergence_record
from probattn.studies.support_tokens.prior import FIRST_INFORMATIVE
from probattn.studies.support_tokens.study_splits import SHAKESPEARE_SPLITS, WIKITEXT_SPLITS, cut
from probattn.studies.support_tokens.study_summary import missing_runs, tracker_curves, write_summary
from probattn.studies.support_tokens.support_analysis import (
    char_class,
    class_matched,
    frequency_band,
    perturbation_test,
)


def test_splits_are_disjoint_cover_the_source_and_score_enough_text():
    text = "".join(chr(97 + i % 26) for i in range(10_000))
    s = cut(text, SHAKESPEARE_SPLITS)
    assert s["train"] + s["valid"] + s["test"] == text
    assert (len(s["train"]), len(s["valid"]), len(s["test"])) == (7_200, 800, 2_000)
    w = cut(text, WIKITEXT_SPLITS, test_text="scored")
    assert w["train"] + w["valid"] == text and w["test"] == "scored" and len(w["valid"]) == 1_000
    # Tiny Shakespeare's last 20 % is 223k characters: more than the 204,800 the scale scores
    assert int(1_115_394 * 0.2) >= study.SCALES_DEF["converge"].robustness.max_tokens


def test_convergence_record_reads_the_best_step_and_the_last_fifth():
    curve = [(0, 4.0), (100, 2.0), (200, 1.5), (300, 1.4), (400, 1.45), (500, 1.38)]
    r = convergence_record(curve)
    assert (r["steps_run"], r["best_step"], r["best_val_loss"]) == (500, 500, 1.38)
    assert r["best_val_loss_at_80pct"] == 1.4  # best over steps <= 400
    assert r["last_20pct_improvement"] == pytest.approx(0.02)
    assert r["last_20pct_improvement_rel"] == pytest.approx(0.02 / 1.4)
    flat = convergence_record([(0, 3.0), (100, 1.0), (200, 1.1), (300, 1.2)])
    assert flat["best_step"] == 100 and flat["last_20pct_improvement"] == 0.0


def test_frequency_bands_are_factors_of_two():
    assert [frequency_band(c) for c in (0, 1, 2, 3, 4, 7, 8, 1000)] == [0, 0, 1, 1, 2, 2, 3, 9]


def test_class_matched_positions_share_class_and_band_and_avoid_the_support_set():
    g = torch.Generator().manual_seed(0)
    text = "the cat, sat on 12 mats; the dog 7 ran. " * 4
    chars = [list(text[i * 40:(i + 1) * 40]) for i in range(4)]
    counts = Counter(text * 100)
    support = [(0, 7), (1, 16), (2, 3), (3, 23)]  # ',', '1', ' ', ';'
    for _ in range(5):
        picks, fallbacks = class_matched(support, chars, counts, g)
        assert len(set(picks)) == len(picks) and not set(picks) & set(support)
        for (w, t), (pw, pt) in zip(support, picks):
            assert pt >= FIRST_INFORMATIVE
            a, b = chars[w][t], chars[pw][pt]
            assert char_class(a) == char_class(b)
            assert frequency_band(counts[a]) == frequency_band(counts[b]) or fallbacks
    # the only punctuation is the support token itself: the match falls back to any position
    only = [[*"ab;cd"]]
    picks, fallbacks = class_matched([(0, 2)], only, Counter("ab;cd"), g)
    assert fallbacks == 1 and char_class(only[0][picks[0][1]]) == "letter"


def test_perturbation_test_adds_the_matched_control_without_changing_the_old_draws():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=16))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, 11, (4, 12), generator=g), torch.randint(0, 11, (4, 12), generator=g)
    chars = [[str(int(t)) if int(t) < 5 else "abcdef"[int(t) - 5] for t in row] for row in x]
    pairs = [(0, 3), (2, 5), (3, 11)]
    old = perturbation_test(model, x, y, pairs, draws=3, seed=2)
    new = perturbation_test(model, x, y, pairs, draws=3, seed=2, chars=chars)
    for key, value in old.items():
        assert new[key] == value, key
    for key in ("substitute_class_matched", "noise_class_matched", "substitute_ratio_class_matched"):
        assert key in new and new[key] == new[key]
    assert 0.0 <= new["class_matched_fallback_share"] <= 1.0


@pytest.fixture
def shakespeare_dir(tmp_path, monkeypatch):
    data = tmp_path / "data" / "tinyshakespeare"
    data.mkdir(parents=True)
    line = "First Citizen:\nBefore we proceed any further, hear me speak; 12 times.\n\n"
    (data / "input.txt").write_text(line * 80)
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def test_converge_smoke_scores_the_best_checkpoint_on_the_test_split_and_lists_missing(
        tmp_path, shakespeare_dir):
    out = tmp_path / "out"
    results = study.run_study("smoke-converge", out, (str(shakespeare_dir),), limit=5, progress=False)
    scale = study.SCALES_DEF["smoke-converge"]
    for r in results:
        assert r["scored_checkpoint"]["which"] == "best"
        assert r["scored_checkpoint"]["step"] == r["convergence"]["best_step"]
        cfg = r["config"]
        assert cfg["train"]["patience"] == 1 and cfg["data"]["valid_data"] is None
        assert "substitute_class_matched" in r["support"]["layers"]["perturbation"]
    corpus = load_corpus(results[0]["config"]["data"]["corpus"])
    text = (shakespeare_dir / "tinyshakespeare" / "input.txt").read_text()
    assert corpus.test == text[int(len(text) * 0.8):]  # scored: the last 20 %, never trained or stopped on
    run_dir = out / "runs" / "tinyshakespeare" / "baseline" / "seed0"
    assert (run_dir / "checkpoints" / "best.pt").exists() and not (run_dir / "checkpoints" / "last.pt").exists()
    assert len(missing_runs(results, scale)) == len(scale.plans[0].variants) * 2 - 5
    summary = write_summary(out, tmp_path / "summary", scale)
    assert [tuple(m) for m in summary["missing"]] == missing_runs(results, scale)
    md = (tmp_path / "summary" / "summary.md").read_text()
    assert "Missing runs (3)" in md and "Convergence" in md
    assert "against class- and frequency-matched tokens" in md  # the baseline has two seeds: support stats
    st = summary["corpora"]["tinyshakespeare"]["support"]["baseline"]["layers"]
    assert st["substitute_excess_class_matched"]["n"] == 2
    conv = summary["corpora"]["tinyshakespeare"]["convergence"]["baseline"]
    assert conv["n"] == 2 and conv["best_step"]["values"] == [float(results[i]["convergence"]["best_step"])
                                                              for i in (0, 4)]
    assert json.loads((tmp_path / "summary" / "summary.json").read_text())["missing"]


def test_tracker_curves_average_only_the_seeds_that_reached_a_step():
    def run(values):
        return {"tracker": {"rows": [{"step": 10 * i, "layers": {"q0.5": v}} for i, v in enumerate(values)]}}

    steps, mean, sd = tracker_curves({0: run([1.0, 2.0, 3.0]), 1: run([3.0, 4.0])}, "layers", "q0.5")
    assert steps == [0, 10, 20] and mean == [2.0, 3.0, 3.0]
    assert sd[0] == pytest.approx(2 ** 0.5) and sd[2] == 0.0


def test_converge_scale_meets_the_issue():
    s = study.SCALES_DEF["converge"]
    plan = s.plans[0]
    m, t = s.overrides["model"], s.overrides["train"]
    assert m["n_layer"] >= 4 and m["n_embd"] >= 128 and m["block_size"] >= 128 and m["dropout"] > 0
    assert t["patience"] >= 3 and s.select == "best" and s.robustness.max_tokens >= 200_000
    assert [p.spec.label for p in s.plans] == ["wikitext-2 (char)", "tinyshakespeare"]
    assert all(len(p.seeds) >= 8 for p in s.plans)
    names = [v.name for v in plan.variants]
    for family in ("dropout", "noise-aug", "weight-decay"):
        assert sum(n.startswith(family) for n in names) >= 2, family
    assert {"barrier lam=0.02", "barrier lam=0.05", "barrier one_sided lam=0.05",
            "barrier layers lam=0.05"} <= set(names)
    port = next(v for v in plan.variants if "port" in v.name).train["objective_options"]
    assert (port["form"], port["projection"], port["rank"]) == ("abs", "learned", "full")
    base_dropout = m["dropout"]
    assert all(v.model["dropout"] > base_dropout for v in plan.variants if v.name.startswith("dropout"))


def test_a_run_written_before_an_option_existed_is_still_the_same_configuration():
    old = {"train": {"lr": 0.002, "seed": 0}, "model": {"n_layer": 2}}
    assert study.same_config(old, {"train": {"lr": 0.002, "seed": 0, "patience": None},
                                   "model": {"n_layer": 2}})
    assert not study.same_config(old, {"train": {"lr": 0.002, "seed": 0, "patience": 5},
                                       "model": {"n_layer": 2}})
    assert not study.same_config(old, {"train": {"lr": 0.001, "seed": 0}, "model": {"n_layer": 2}})
    assert not study.same_config(old, {"train": {"lr": 0.002}, "model": {"n_layer": 2}})
