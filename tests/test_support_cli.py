"""Support tokens of real text: API, sliding windows, the CLI, its HTML view and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from probattn.cli import main
from probattn.runs import load_run
from probattn.studies.support_tokens.support import support_tokens, text_margins, window_starts
from probattn.train import apply_overrides, preset_config, train

TEXT = "def f(x):\n    return x < 3 and x > 1  # <script>alert('hi')</script>\n"


def _train(path, objective):
    cfg = apply_overrides(preset_config("tiny"), {
        "train": {"max_steps": 6, "eval_interval": 3, "eval_batches": 1, "log_interval": 3, **objective},
        "model": {"n_embd": 16, "block_size": 32}})
    train(cfg, path, progress=False)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("support-runs")
    return {"barrier": _train(base / "barrier", {"objective": "barrier", "objective_options": {"lam": 0.05}}),
            "ce": _train(base / "ce", {})}


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_support_tokens_bottom_k_and_quantile():
    m = torch.tensor([float("nan"), 0.3, -2.0, 0.1, -0.5, 1.0])
    assert support_tokens(m, k=2).tolist() == [2, 4]
    assert support_tokens(m, quantile=0.4).tolist() == [2, 4]
    assert support_tokens(m, k=10).tolist() == [2, 4, 3, 1, 5]  # NaN (no past) never ranked


def test_cli_writes_escaped_html_histogram_and_json(runs, tmp_path, capsys):
    out = tmp_path / "view"
    code, stdout, err = cli(capsys, "support-tokens", "--run", str(runs["barrier"]), "--text", TEXT[:24],
                            "--top", "5", "--out", str(out))
    assert code == 0, err
    assert "margin" in stdout and "support tokens" in stdout
    page = (out / "support_tokens.html").read_text()
    data = json.loads((out / "margins.json").read_text())
    assert data["source"] == "prior" and len(data["support_tokens"]) == 5
    assert (out / "margins_hist.png").stat().st_size > 1000
    assert "data:image/png;base64," in page


def test_user_text_is_escaped_in_the_html(runs, tmp_path, capsys):
    text = "<script>alert(1)</script>"
    out = tmp_path / "xss"
    code, _, err = cli(capsys, "support-tokens", "--run", str(runs["ce"]), "--text", text, "--out", str(out))
    assert code == 0, err
    page = (out / "support_tokens.html").read_text()
    assert "<script" not in page.lower()
    assert "&lt;" in page and "&gt;" in page


def test_auto_source_follows_the_run(runs):
    assert text_margins(load_run(runs["barrier"]), "x = 1 + 2").source == "prior"
    assert text_margins(load_run(runs["ce"]), "x = 1 + 2").source == "layers"
    tm = text_margins(load_run(runs["barrier"]), "x = 1 + 2", source="layers", mask="inclusive", values=True)
    assert tm.per_layer.shape[:2] == (2, 1) and tm.source == "layers"
    assert torch.isnan(tm.margins[0]) and torch.isfinite(tm.margins[1:]).all()  # inclusive: only t = 0 fixed
    strict = text_margins(load_run(runs["ce"]), "x = 1 + 2")
    assert torch.isnan(strict.margins[:2]).all() and torch.isfinite(strict.margins[2:]).all()


def test_sliding_windows_reuse_each_windows_own_margins(runs):
    run = load_run(runs["ce"])
    block = run.model.config.block_size
    text = (TEXT * 2)[: block * 2 + 5]
    slid = text_margins(run, text, source="layers", slide=True)
    starts = window_starts(len(text), block)
    assert len(slid.windows) == len(starts) > 2
    for i, start in enumerate(starts):
        alone = text_margins(run, text[start : start + block], source="layers").per_layer
        lo = 2 if i == 0 else starts[i - 1] + block  # the positions this window owns
        hi = min(start + block, len(text))
        torch.testing.assert_close(slid.per_layer[:, :, lo:hi], alone[:, :, lo - start : hi - start])


@pytest.mark.parametrize("argv,needle", [
    (["--text", "caf\u00e9 \u2603"], "outside the model's vocabulary"),
    (["--text", ""], "empty"),
    (["--text", "xy"], "at least three"),
    (["--text", "ab" * 40], "--slide"),
    (["--text", "abc", "--quantile", "1.5"], "quantile"),
    (["--text", "abc", "--top", "0"], "positive"),
    (["--file", "/nonexistent/file.txt"], "not found"),
])
def test_bad_input_one_line_error_and_nothing_written(runs, tmp_path, capsys, argv, needle):
    out = tmp_path / "never"
    code, stdout, err = cli(capsys, "support-tokens", "--run", str(runs["barrier"]), *argv, "--out", str(out))
    assert code == 2
    assert err.startswith("probattn: error:") and err.count("\n") == 1 and needle in err, err
    assert not out.exists()


def test_run_without_checkpoint_and_prior_without_prior(runs, tmp_path, capsys):
    (tmp_path / "empty-run").mkdir()
    code, _, err = cli(capsys, "support-tokens", "--run", str(tmp_path / "empty-run"), "--text", "abc")
    assert code == 2 and "no checkpoint" in err and err.count("\n") == 1
    code, _, err = cli(capsys, "support-tokens", "--run", str(runs["ce"]), "--text", "abc", "--source", "prior")
    assert code == 2 and "embedding prior" in err


def test_slide_accepts_long_text(runs, tmp_path, capsys):
    code, _, err = cli(capsys, "support-tokens", "--run", str(runs["ce"]), "--text", "ab " * 30, "--slide",
                       "--quantile", "0.1", "--out", str(tmp_path / "slide"))
    assert code == 0, err
    data = json.loads((tmp_path / "slide" / "margins.json").read_text())
    assert len(data["windows"]) > 1 and data["margins"][:2] == [None, None] and all(
        m is not None for m in data["margins"][2:])
