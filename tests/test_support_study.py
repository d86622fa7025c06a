"""The support-tokens study: augmentation control, margin tracker, support analysis, the study's
resumable runs and its paired summary (intervals, matched-cost controls, verdict)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from probattn.errors import ConfigError
from probattn.model import GPT, GPTConfig
from probattn.report.intervals import interval_summary
from probattn.studies.support_tokens import study
from probattn.studies.support_tokens.prior import FIRST_INFORMATIVE
from probattn.studies.support_tokens.study_summary import matched_gain, verdict, write_summary
from probattn.studies.support_tokens.support_analysis import (
    _substituted,
    char_profile,
    jaccard,
    perturbation_test,
    support_set,
)
from probattn.studies.support_tokens.tracking import margin_stats, window_margins
from probattn.train import build_objective


def tiny(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=16, dropout=dropout))


def test_noise_augmentation_is_ce_at_zero_and_noisier_above():
    model = tiny()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 11, (3, 12), generator=g), torch.randint(0, 11, (3, 12), generator=g)
    ce = model(x, y)[1]
    zero = build_objective("embedding_noise", {"sigma": 0.0}, model)
    torch.testing.assert_close(zero(model, x, y)[0], ce)
    noisy = build_objective("embedding_noise", {"sigma": 2.0}, model)
    torch.manual_seed(1)
    loss, _ = noisy(model, x, y)
    torch.manual_seed(1)  # the same noise by hand: embed + 2 * rms * N(0, I)
    emb = model.embed(x)
    rms = emb.detach().pow(2).mean().sqrt()
    expected = F.cross_entropy(
        model.forward_embeddings(emb + 2.0 * rms * torch.randn_like(emb)).reshape(-1, 11), y.reshape(-1)
    )
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.isfinite(model.wte.weight.grad).all() and model.wte.weight.grad.abs().max() > 0
    with pytest.raises(ConfigError):
        build_objective("embedding_noise", {"sigma": -1.0}, model)


def test_margin_stats_and_window_margins():
    m = torch.arange(200, dtype=torch.float64).view(4, 50) / 100 - 1.0  # -1 .. 0.99
    s = margin_stats(m)
    assert s["q0.5"] == pytest.approx(float(torch.quantile(m.flatten(), 0.5)))
    assert s["share_det<1"] == pytest.approx(100 / 200)
    assert s["share_det<0.5"] == pytest.approx(float((m < math.log(0.5)).double().mean()))
    model = tiny()
    out = window_margins(model, torch.randint(0, 11, (3, 12)))
    assert out["prior"].shape == out["layers"].shape == (3, 12 - FIRST_INFORMATIVE)
    assert torch.isfinite(out["prior"]).all() and torch.isfinite(out["layers"]).all()


def test_support_set_jaccard_and_profile():
    m = torch.tensor([[0.5, -2.0, 0.1, 0.3], [0.2, 0.4, -1.0, 0.9]])
    assert support_set(m, share=0.25) == [(0, 1 + FIRST_INFORMATIVE), (1, 2 + FIRST_INFORMATIVE)]
    assert jaccard([(0, 1), (1, 2)], [(1, 2), (3, 3)]) == pytest.approx(1 / 3)
    chars = [
        list("ab c."),
        list("xy\n1z"),
    ]
    chars = [row + ["e"] for row in chars]
    prof = char_profile(chars, [(0, 3), (1, 3)])
    assert sum(c["support_share"] for c in prof["classes"].values()) == pytest.approx(1.0)
    assert sum(c["base_share"] for c in prof["classes"].values()) == pytest.approx(1.0)
    assert prof["classes"]["letter"]["support_share"] == pytest.approx(0.5)  # 'c' and '1' -> letter, digit
    assert prof["classes"]["digit"]["support_share"] == pytest.approx(0.5)
    assert prof["mean_position"] == 3


def test_substitution_changes_exactly_the_chosen_tokens_and_the_test_reports_losses():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 11, (4, 12), generator=g)
    pairs = [(0, 3), (2, 5), (3, 11)]
    out = _substituted(x, pairs, 11, g)
    changed = {(int(w), int(t)) for w, t in torch.nonzero(out != x)}
    assert changed == set(pairs)
    model = tiny()
    y = torch.randint(0, 11, (4, 12), generator=g)
    res = perturbation_test(model, x, y, pairs, draws=2, seed=0)
    with torch.no_grad():
        clean = float(F.cross_entropy(model(x)[0].reshape(-1, 11), y.reshape(-1)))
    assert res["clean"] == pytest.approx(clean, rel=1e-6) and res["count"] == 3
    for key in ("substitute_support", "substitute_random", "noise_position_matched"):
        assert math.isfinite(res[key])


def test_matched_gain_interpolates_through_the_baseline_and_verdict_reads_intervals():
    assert matched_gain([(0.02, 0.10), (0.06, 0.30)], 0.01) == (pytest.approx(0.05), False)
    assert matched_gain([(0.02, 0.10), (0.06, 0.30)], 0.04) == (pytest.approx(0.20), False)
    assert matched_gain([(0.02, 0.10)], 0.04) == (pytest.approx(0.10), True)  # nearest strength, flagged
    assert matched_gain([(0.02, 0.10)], -0.01) == (0.0, True)
    cheap, big = interval_summary([0.001, 0.002, 0.003]), interval_summary([0.3, 0.31, 0.29])
    assert verdict(cheap, big) == "holds"
    assert verdict(interval_summary([0.05, 0.06, 0.07]), big).startswith("fails: clean")
    assert verdict(cheap, interval_summary([0.01, 0.02, 0.0])).startswith("fails: gain")
    assert verdict(cheap, interval_summary([-0.5, 0.5, 0.1])).startswith("undecided")


def test_smoke_study_resumes_and_summarizes(tmp_path):
    results = study.run_study("smoke", tmp_path / "out", limit=4, progress=False)
    assert [r["variant"] for r in results] == [
        "baseline",
        "barrier lam=0.05",
        "barrier one_sided lam=0.05",
        "noise-aug sigma=0.3",
    ]
    done = tmp_path / "out" / "runs" / "default" / "baseline" / "seed0" / "study.json"
    stamp = done.stat().st_mtime_ns
    again = study.run_study("smoke", tmp_path / "out", limit=1, progress=False)  # finished: skipped
    assert done.stat().st_mtime_ns == stamp and again[0]["robustness"]["clean"] == results[0]["robustness"]["clean"]
    r = results[1]
    assert {c["kind"] for c in r["robustness"]["conditions"]} == {"embedding_noise", "substitute", "delete", "swap"}
    assert [row["step"] for row in r["tracker"]["rows"]] == [0, 3, 6]
    summary = write_summary(tmp_path / "out", tmp_path / "summary", study.SCALES_DEF["smoke"])
    assert summary["runs"] == 4
    v = summary["corpora"]["default"]["variants"]["barrier lam=0.05"]
    base_loss, bar_loss = results[0]["robustness"]["clean"]["loss"], results[1]["robustness"]["clean"]["loss"]
    assert v["clean_cost"]["values"] == [pytest.approx((bar_loss - base_loss) / base_loss)]
    assert (tmp_path / "summary" / "summary.md").read_text().startswith("# Support-tokens study")
    assert json.loads((tmp_path / "summary" / "summary.json").read_text())["runs"] == 4


def test_gpu_scale_is_nanogpt_baby_gpt():
    s = study.SCALES_DEF["gpu"]
    cfg = study.run_config(
        s, study.CorpusPlan(study.SHAKESPEARE, (study.BASELINE,), (0,)), study.BASELINE, 0, (), "cuda"
    )
    assert (cfg.model.n_layer, cfg.model.n_head, cfg.model.n_embd, cfg.model.block_size) == (6, 6, 384, 256)
    assert cfg.train.max_steps == 5000 and cfg.model.dropout == 0.2
    assert len(s.plans[0].seeds) >= 8
