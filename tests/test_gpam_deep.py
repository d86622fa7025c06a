"""The deep-LM study (gpam-deep): word-level perplexity by hand, the data split, the variants'
configurations and parameter counts, the t interval, and a cached smoke run end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from probattn.cli import main
from probattn.data import build_tokenizer
from probattn.model import GPT, GPTConfig
from probattn.report import paired_t_interval
from probattn.studies.gpam import deep_experiment as gpam_deep


def test_word_perplexity_of_a_tiny_case_by_hand():
    text = "the cat sat\non a mat\n"  # 6 words, 21 characters
    assert gpam_deep.word_count(text) == 6
    assert gpam_deep.word_perplexity(6 * math.log(10.0), text) == pytest.approx(10.0, rel=1e-12)
    # a model with all-zero weights predicts every character uniformly: ln V nats each, for the
    # 20 characters after the first, so the word perplexity is V ** (20 / 6)
    tok = build_tokenizer("char", text)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=4))
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    scored = gpam_deep.score_text(model, tok.encode(text), text)
    V = tok.vocab_size
    assert scored["chars_predicted"] == 20 and scored["words"] == 6
    assert scored["total_nats"] == pytest.approx(20 * math.log(V), rel=1e-6)
    assert scored["word_ppl"] == pytest.approx(V ** (20 / 6), rel=1e-5)
    with pytest.raises(ValueError, match="at least one word"):
        gpam_deep.word_perplexity(1.0, " \n")


def test_cut_at_line_keeps_whole_lines():
    assert gpam_deep.cut_at_line("ab\ncd\nef\n", 7) == "ab\ncd\n"
    assert gpam_deep.cut_at_line("ab\ncd\n", None) == "ab\ncd\n"
    assert gpam_deep.cut_at_line("abcdef", 3) == "abc"


def test_the_paired_interval_by_hand():
    ci = paired_t_interval([-0.03, -0.01, -0.02])  # mean -0.02, std 0.01
    half = 4.3026527 * 0.01 / math.sqrt(3)
    assert ci["mean"] == pytest.approx(-0.02) and ci["std"] == pytest.approx(0.01)
    assert (ci["lo"], ci["hi"]) == pytest.approx((-0.02 - half, -0.02 + half), rel=1e-6)
    assert math.isnan(paired_t_interval([0.1])["lo"])


def test_wikitext_split_train_on_valid_tune_on_its_tail_report_on_test(tmp_path):
    wt = tmp_path / "data" / "wikitext-2"
    wt.mkdir(parents=True)
    valid = "".join(f"valid line {i}\n" for i in range(100))
    (wt / "valid.txt").write_text(valid)
    (wt / "test.txt").write_text("test line\n" * 5)
    info = gpam_deep.prepare_corpus(tmp_path / "out", (str(tmp_path / "data"),))
    assert info["corpus"] == "wikitext-2" and "valid" in info["train"] and "test" in info["test"]
    train, tune = ((tmp_path / "out" / f"{s}.txt").read_text() for s in ("train", "valid"))
    assert train + tune == valid and train.endswith("\n") and 0.85 < len(train) / len(valid) <= 0.9
    assert (tmp_path / "out" / "test.txt").read_text() == "test line\n" * 5
    (wt / "train.txt").write_text("train line\n" * 9)  # with a train split the published splits serve
    full = gpam_deep.prepare_corpus(tmp_path / "full", (str(tmp_path / "data"),))
    assert full["train"] == "WikiText-2 train" and (tmp_path / "full" / "valid.txt").read_text() == valid
    fallback = gpam_deep.prepare_corpus(tmp_path / "other", (str(tmp_path / "nothing"),))
    assert fallback["corpus"] == "default" and "not in the data path" in fallback["test"]


def test_variant_configs_and_parameter_counts(tmp_path):
    scale = gpam_deep.DEEP_SETTINGS["quick"]
    base = gpam_deep.deep_base(scale, tmp_path)
    configs = gpam_deep.variant_configs(base, (0.5, 1.0))
    assert set(configs) == set(gpam_deep.VARIANTS)
    counts = {k: GPT(c.model).num_params() for k, c in configs.items()}
    m = base.model
    assert m.n_layer == 15 and m.n_embd == 64
    assert counts["gpam"] - counts["softmax"] == 15 * m.n_embd * m.head_dim  # W_Q- per head: C d per layer
    assert counts["gpam_shared"] - counts["softmax"] == 15 * m.head_dim ** 2  # shared: d^2 per layer
    assert abs(counts["softmax_matched"] - counts["gpam"]) <= 2 * m.n_embd
    assert configs["gpam"].model.attention_options == {"tied": False, "lam": 0.5, "lam_neg": 1.0}
    assert configs["gpam_no_decay"].model.attention_options["w_q_neg_decay"] is False
    assert configs["softmax_post"].model.norm_position == "post" == configs["gpam_post"].model.norm_position
    assert configs["softmax"].model.norm_position == "pre"


def test_smoke_run_tunes_lambdas_reports_every_variant_and_reuses_its_runs(tmp_path, capsys):
    out = tmp_path / "deep"
    args = ["experiment", "gpam-deep", "--scale", "smoke", "--out", str(out), "--no-progress", "--device", "cpu",
            "--data-dir", str(tmp_path / "no-data")]
    assert main(args) == 0
    assert "matched softmax" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert set(results["test_loss"]) == set(gpam_deep.VARIANTS)
    assert all(v["n"] == 2 for v in results["test_word_ppl"].values())
    best = min(results["lambda_grid"], key=lambda g: g["tune_loss"])
    assert results["chosen_lambdas"] == {"lam_pos": best["lam_pos"], "lam_neg": best["lam_neg"]}
    chosen_dir = gpam_deep.lam_dir(out, (best["lam_pos"], best["lam_neg"])) / "seed0"
    stored = json.loads((chosen_dir / "measure.json").read_text())
    assert results["test_loss"]["gpam"]["values"][0] == stored["test"]["loss"]  # the tuning run is reused
    for pair, ci in results["paired"].items():
        a, b = pair.split(" - ")
        diffs = [x - y for x, y in zip(results["test_loss"][a]["values"], results["test_loss"][b]["values"])]
        assert ci["test_loss"]["mean"] == pytest.approx(sum(diffs) / len(diffs))
    # a second run reuses every cached measurement; a lost measure.json is re-made from the checkpoint
    lost = out / "softmax" / "seed1" / "measure.json"
    lost.unlink()
    stamp = (out / "gpam_post" / "seed0" / "measure.json").stat().st_mtime_ns
    assert main(args) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["test_loss"] == results["test_loss"]
    assert (out / "gpam_post" / "seed0" / "measure.json").stat().st_mtime_ns == stamp
    assert "softmax" in (out / "report.md").read_text()


def test_an_interrupted_run_is_not_scored_and_resumes(tmp_path, monkeypatch):
    from probattn.experiments.context import ExperimentContext
    from probattn.train import Callback, Trainer, apply_overrides

    class StopAtFirstEval(Callback):
        def on_eval(self, trainer, step, metrics):
            if step > 0:
                trainer.request_stop()

    corpus = tmp_path / "data"
    gpam_deep.prepare_corpus(corpus, ())
    scale = gpam_deep.DEEP_SETTINGS["smoke"]
    cfg = apply_overrides(gpam_deep.deep_base(scale, corpus), {"train": {"max_steps": 4, "eval_interval": 2,
                                                                         "device": "cpu"}})
    texts = gpam_deep.scoring_texts(corpus, scale)
    ctx = ExperimentContext(out_dir=tmp_path, scale="smoke", progress=False)
    real_train = gpam_deep.train

    def stopped_after_two_steps(config, run_dir, **kw):
        return Trainer(config, run_dir, callbacks=[StopAtFirstEval()], **kw).fit()

    monkeypatch.setattr(gpam_deep, "train", stopped_after_two_steps)
    with pytest.raises(gpam_deep.TrainingInterrupted, match="interrupted"):
        gpam_deep.measured_run(cfg, tmp_path / "run", texts, ctx)
    assert not (tmp_path / "run" / "measure.json").exists()
    monkeypatch.setattr(gpam_deep, "train", real_train)
    resumed = gpam_deep.measured_run(cfg, tmp_path / "run", texts, ctx)
    fresh = gpam_deep.measured_run(cfg, tmp_path / "fresh", texts, ctx)
    assert resumed["test"] == fresh["test"]  # resuming gives the uninterrupted run's scores
