"""Class: reports that mislead. Throughput from a dozen steps, a paper headline judged from a
smoke run, a clean loss whose tokens are not named, JSON with bare NaN (null and the reason
instead), a progress bar showing a stale validation loss."""

import json
import math

import pytest

from probattn.studies.support_tokens.experiment import HEADLINE_SIGMA, NOISE, headline_for
from probattn.train.trainer import Throughput

from .cli_cases import run_cli

FLAGS = ["--preset", "tiny", "--n-layer", "1", "--n-embd", "16", "--batch-size", "2", "--eval-batches", "1",
         "--no-progress"]


@pytest.mark.parametrize("steps, measured", [(3, False), (24, False), (25, True), (60, True)])
def test_throughput_is_timed_after_warm_up_or_not_reported(steps, measured):
    import torch

    t = Throughput(tokens_per_step=64)
    t.start()
    for _ in range(steps):
        t.step(torch.device("cpu"))
    assert t.timed_steps == max(0, steps - Throughput.WARMUP_STEPS)
    assert (t.rate_or_none() is not None) == measured
    assert math.isfinite(t.rate()) == measured


def test_a_short_run_says_its_throughput_was_not_measured(tmp_path, capsys):
    code, out, _ = run_cli(["train", *FLAGS, "--max-steps", "8", "--eval-interval", "4", "--out", tmp_path / "r"],
                           capsys)
    assert code == 0 and "tokens/s not measured (3 steps after warm-up)" in out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["tokens_per_s"] is None and summary["timed_steps"] == 3


def test_a_smoke_baseline_report_leaves_throughput_out(tmp_path, capsys):
    code, _, err = run_cli(["experiment", "baseline", "--scale", "smoke", "--seeds", "0", "--out", tmp_path,
                            "--no-progress"], capsys)
    assert code == 0, err
    report = (tmp_path / "report.md").read_text()
    assert "tokens/s" not in report and "throughput left out: fewer than 100 steps timed" in report
    assert "tokens_per_s" not in json.loads((tmp_path / "results.json").read_text())["summary"]


@pytest.mark.parametrize("scale, words", [("smoke", "not assessed at smoke scale"), ("quick", "MET"),
                                          ("paper", "MET")])
def test_a_smoke_run_never_judges_the_paper_headline(scale, words):
    key = f"{NOISE} {HEADLINE_SIGMA:g}"
    comparisons = {"barrier": {key: {"clean_degradation": [0.001, 0.002], "damage_gain": [0.3, 0.4]}}}
    lines, headline = headline_for(comparisons, scale)
    assert words in lines[0]
    assert ("met" in next(iter(headline.values()))) == (scale != "smoke")


def test_eval_robust_names_the_tokens_of_its_clean_loss(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(["train", *FLAGS, "--max-steps", "4", "--eval-interval", "4", "--out", run], capsys)[0] == 0
    code, out, _ = run_cli(["eval-robust", "--run", run, "--max-tokens", "600", "--sigmas", "0.5", "--rates", "0.1",
                            "--kinds", "swap", "--json", tmp_path / "rob.json"], capsys)
    assert code == 0
    rob = json.loads((tmp_path / "rob.json").read_text())
    n = rob["clean_tokens"]
    assert n == rob["windows"] * rob["block_size"] and n <= 600
    assert f"clean loss over the first {n:,} of {rob['split_tokens']:,} tokens" in out
    assert f"probattn eval --max-tokens {n}" in out
    code, _, _ = run_cli(["eval", "--run", run, "--max-tokens", n, "--json", tmp_path / "ev.json"], capsys)
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["tokens"] == n and ev["loss"] == pytest.approx(rob["clean"]["loss"], rel=1e-6)


# -- every JSON a command writes is JSON: no bare NaN, a null says why -------------------------------
def _strict(text: str):
    """json.loads that refuses NaN and Infinity (what other JSON readers do)."""
    def refuse(name):
        raise ValueError(f"bare {name} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_the_json_writer_turns_non_finite_numbers_into_null_with_the_reason(tmp_path):
    import numpy as np
    import torch

    from probattn.io import NON_FINITE_KEY, dumps_json, write_json

    nan, inf = float("nan"), float("inf")
    data = {"loss": nan, "ok": 1.5, "curve": [1.0, inf, -inf], "pairs": ((nan, 2.0),),
            "nested": {"acc": -inf, "rows": [{"x": nan}]}, "t": torch.tensor([0.5, nan]),
            "n": np.float64("inf"), "arr": np.array([nan, 1.0]), "flag": True, "none": None}
    out = _strict(dumps_json(data))
    assert out["loss"] is None and out["ok"] == 1.5 and out["curve"] == [1.0, None, None]
    assert out[NON_FINITE_KEY] == {"loss": "NaN", "curve[1]": "Infinity", "curve[2]": "-Infinity",
                                   "pairs[0][0]": "NaN", "t[1]": "NaN", "n": "Infinity", "arr[0]": "NaN"}
    assert out["nested"] == {"acc": None, "rows": [{"x": None, NON_FINITE_KEY: {"x": "NaN"}}],
                             NON_FINITE_KEY: {"acc": "-Infinity"}}
    assert out["flag"] is True and out["none"] is None and out["t"] == [0.5, None] and out["arr"] == [None, 1.0]
    assert _strict(dumps_json([nan, {"a": inf}], indent=None)) == [None, {"a": None, NON_FINITE_KEY: {"a": "Infinity"}}]
    assert _strict(dumps_json({"a": 1.0})) == {"a": 1.0}  # nothing to record, no key added
    write_json(tmp_path / "x.json", {"v": nan})
    assert _strict((tmp_path / "x.json").read_text()) == {"v": None, NON_FINITE_KEY: {"v": "NaN"}}


def test_probattns_own_readers_get_the_non_finite_numbers_back(tmp_path):
    from probattn.io import read_json, write_json

    nan, inf = float("nan"), float("inf")
    data = {"loss": nan, "ok": 1.5, "curve": [1.0, inf, -inf], "pairs": [[nan, 2.0]],
            "nested": {"acc": -inf, "rows": [{"x": nan}, {"y": None}]}, "none": None, "_other": 1}
    write_json(tmp_path / "d.json", data)
    # json.dumps writes NaN as NaN, so equal text means equal values, NaN in the same places
    assert json.dumps(read_json(tmp_path / "d.json"), sort_keys=True) == json.dumps(data, sort_keys=True)


def test_metrics_jsonl_is_strict_json_and_the_csv_keeps_its_columns(tmp_path):
    from probattn.train.metrics import MetricsLogger, read_jsonl

    logger = MetricsLogger(tmp_path)
    logger.log({"step": 1, "split": "train", "loss": 2.0})
    logger.log({"step": 2, "split": "valid", "loss": float("nan"), "acc": 0.5})
    logger.close()
    rows = [_strict(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[1] == {"step": 2, "split": "valid", "loss": None, "acc": 0.5, "_non_finite": {"loss": "NaN"}}
    again = read_jsonl(tmp_path / "metrics.jsonl")  # probattn's own reader gets the NaN back
    assert math.isnan(again[1].pop("loss")) and again[1] == {"step": 2, "split": "valid", "acc": 0.5}
    assert again[0] == rows[0]
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["step,split,loss,acc", "1,train,2.0,",
                                                                  "2,valid,nan,0.5"]


def test_commands_write_valid_json_when_a_model_returns_nan(tmp_path, capsys):
    """A run whose output head holds a NaN: its losses are NaN; eval, eval-robust and
    support-tokens still write JSON any reader takes, each null explained."""
    import torch

    from probattn.train.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    assert run_cli(["train", *FLAGS, "--max-steps", "2", "--eval-interval", "2", "--out", run], capsys)[0] == 0
    path = run / "checkpoints" / "best.pt"
    meta, payload = load_checkpoint(path)
    payload["model"]["lm_head.weight"][0, 0] = float("nan")
    save_checkpoint(path, meta, {k: v for k, v in payload.items() if k not in ("format", "meta")})
    code, _, err = run_cli(["eval", "--run", run, "--max-tokens", "64", "--json", tmp_path / "ev.json"], capsys)
    assert code == 0, err
    ev = _strict((tmp_path / "ev.json").read_text())
    assert ev["loss"] is None and ev["_non_finite"]["loss"] == "NaN"
    code, _, err = run_cli(["eval-robust", "--run", run, "--max-tokens", "64", "--sigmas", "0.5", "--rates", "0.1",
                            "--kinds", "swap", "--json", tmp_path / "rob.json"], capsys)
    assert code == 0, err
    rob = _strict((tmp_path / "rob.json").read_text())
    assert rob["clean"]["loss"] is None and rob["clean"]["_non_finite"]["loss"] == "NaN"
    code, _, err = run_cli(["support-tokens", "--run", run, "--text", "the cat sat on the mat",
                            "--out", tmp_path / "st"], capsys)
    assert code == 0, err
    for p in (tmp_path / "st").glob("*.json"):
        _strict(p.read_text())
    assert torch.isnan(payload["model"]["lm_head.weight"]).any()


# -- what the progress bar says --------------------------------------------------------------------
def test_the_progress_bar_shows_the_latest_validation_loss(tmp_path, monkeypatch, capsys):
    import probattn.train.trainer as trainer_module

    shown = []
    monkeypatch.setattr(trainer_module, "_show", lambda bar, values: shown.append(dict(values)))
    run = tmp_path / "r"
    flags = [*FLAGS[:-1], "--max-steps", "6", "--eval-interval", "3", "--log-interval", "2", "--out", run]
    assert run_cli(["train", *flags], capsys)[0] == 0
    valid = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [0, 3, 6]
    assert shown[-1]["val"] == valid[-1]["loss"] != valid[0]["loss"]  # the end shows step 6's, not step 0's
    assert shown[0]["val"] == valid[0]["loss"]
    shown.clear()
    assert run_cli(["train", "--resume", "--out", run, "--max-steps", "8", "--log-interval", "1",
                    "--no-progress"], capsys)[0] == 0
    assert shown[0]["val"] == valid[-1]["loss"]  # after --resume: the run's last, not nan
    assert all(math.isfinite(s["val"]) for s in shown)
