"""Class: a person's first minute. What training is about to do, what every flag means and
defaults to, a preset's resolved config without training, and a readable support-token view."""

import json

import pytest
import torch

from probattn.cli import build_parser
from probattn.studies.support_tokens.support import TextMargins
from probattn.studies.support_tokens.view import SUPPORT_STYLE, _colour, coloured_text_html, contrast, text_colour
from probattn.train import PRESETS, preset_config

from .cli_cases import one_error_line, run_cli, snapshot

FLAGS = ["--preset", "tiny", "--n-layer", "1", "--n-embd", "16", "--batch-size", "2", "--eval-batches", "1",
         "--max-steps", "4", "--eval-interval", "2", "--no-progress"]


def test_training_says_what_it_is_about_to_do_before_the_first_step(tmp_path, capsys):
    run = tmp_path / "run"
    code, out, _ = run_cli(["train", *FLAGS, "--out", run], capsys)
    first, *rest = out.splitlines()
    assert code == 0 and rest[-1].startswith("done: 4 steps")
    for words in (" parameters (1 layers, 2 heads, width 16, context 32", "data default (",
                  "char tokenizer", "device cpu", "4 steps of 2 x 32 tokens, seed 1337", f"-> {run}"):
        assert words in first, (words, first)
    code, out, _ = run_cli(["train", "--resume", "--out", run, "--max-steps", "6", "--no-progress"], capsys)
    assert "resuming at step 4 of 6" in out.splitlines()[0]


def _train_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["train"]


def test_every_train_flag_says_what_it_means_and_its_default(capsys):
    actions = [a for a in _train_parser()._actions if a.dest.startswith("cfg__")]
    assert len(actions) >= 35
    quick = preset_config("quick").to_dict()
    for a in actions:
        meaning, _, default = a.help.rpartition(" (default: ")
        assert len(meaning) > 8 and default.endswith(")"), a.option_strings
        _, section, name = a.dest.split("__")
        value = quick[section][name]
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            assert default[:-1] == str(value), (a.option_strings, default)
    code, out, _ = run_cli(["train", "--help"], capsys)
    expected = "gradient-norm clipping threshold (0 disables clipping) (default: 1.0)"
    assert code == 0 and expected in " ".join(out.split())


@pytest.mark.parametrize("args, section, key, expected", [
    (["--preset", "quick"], "train", "max_steps", 600),
    (["--preset", "shakespeare-char"], "model", "n_embd", 384),
    (["--preset", "tiny", "--lr", "0.01"], "train", "lr", 0.01),
    (["--attention", "gpam", "--attention-option", "lam=0.5"], "model", "attention_options", {"lam": 0.5}),
])
def test_print_config_shows_the_resolved_config_and_trains_nothing(tmp_path, monkeypatch, capsys, args, section,
                                                                   key, expected):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))  # tinyshakespeare is not here
    monkeypatch.delenv("PROBATTN_DATA", raising=False)
    before = snapshot(tmp_path)
    code, out, err = run_cli(["train", *args, "--print-config"], capsys)
    named = "shakespeare-char" in args  # its corpus is not here: nothing is downloaded, one note
    assert code == 0 and (err.startswith("probattn: note: vocab_size printed as null") if named else err == "")
    config = json.loads(out)
    assert config[section][key] == expected
    preset = args[1] if args[0] == "--preset" else "quick"
    assert config["preset"] == preset and set(config) == {"model", "train", "data", "preset"}
    assert snapshot(tmp_path) == before


def test_print_config_matches_every_preset(capsys, monkeypatch, tmp_path):
    """The preset as it is, except the vocabulary size: the tokenizer's (103 characters in the
    embedded corpus), or null with one note when the corpus would have to be downloaded first."""
    from probattn.data import build_tokenizer, load_corpus

    monkeypatch.setenv("PROBATTN_DATA", str(tmp_path))  # no named corpus here
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path))
    default_vocab = build_tokenizer("char", *load_corpus("default").all_text).vocab_size
    for name in PRESETS:
        code, out, err = run_cli(["train", "--preset", name, "--print-config"], capsys)
        printed, preset = json.loads(out), json.loads(preset_config(name).to_json())
        vocab = printed["model"].pop("vocab_size")
        preset["model"].pop("vocab_size")
        assert code == 0 and printed == preset
        if preset_config(name).data.corpus == "default":
            assert vocab == default_vocab == 103 and err == ""
        else:
            assert vocab is None and "vocab_size printed as null" in err and err.count("\n") == 1
    code, _, err = run_cli(["train", "--print-config", "--grad-clip", "nan"], capsys)
    assert code == 2 and "--grad-clip" in one_error_line(err)


def test_support_token_colours_keep_text_readable():
    # every colour the view can use, including both dark ends of the map
    for i in range(101):
        bg = _colour(i / 100, 0.0, 1.0)
        assert contrast(bg, text_colour(bg)) >= 4.5, bg
    assert text_colour(_colour(0.0, 0, 1)) == "#ffffff" and text_colour(_colour(0.5, 0, 1)) == "#000000"


def test_adjacent_support_tokens_stay_distinguishable():
    tokens = list("abcde")
    tm = TextMargins(text="abcde", tokens=tokens, margins=torch.tensor([float("nan"), 0.1, 0.2, 3.0, 5.0]),
                     per_layer=torch.zeros(1, 1, 5), argmin_layer=torch.zeros(5, dtype=torch.long),
                     source="layers", mask="strict", values=False)
    page = coloured_text_html(tm, torch.tensor([1, 2]))
    spans = page.split("<span")[1:]
    assert len(spans) == 5
    assert [SUPPORT_STYLE in s for s in spans] == [False, True, True, False, False]
    assert "margin:0 2px" in SUPPORT_STYLE  # a gap between neighbours, each framed on its own
    assert all("color:#" in s for s in spans)


def test_train_nmt_says_what_it_is_about_to_do_prints_its_config_and_explains_each_flag(tmp_path, capsys):
    pytest.importorskip("sacrebleu")
    from .test_nmt_cli import corpus, smoke

    data, run = corpus(tmp_path / "data"), tmp_path / "run"
    before = snapshot(tmp_path)
    code, out, err = run_cli([*smoke(data, run), "--print-config"], capsys)
    config = json.loads(out)
    assert code == 0 and err == "" and config["task"] == "nmt" and config["data"]["vocab_size"] == 40
    assert snapshot(tmp_path) == before  # nothing trained or written
    code, out, _ = run_cli(smoke(data, run, "--enc-attention", "gpam"), capsys)
    first, *rest = out.splitlines()
    assert code == 0 and rest[-1].startswith("done: 8 steps")
    for words in ("1 encoder + 1 decoder layers, 2 heads, width 32, max length 48",
                  "attention gpam / softmax / softmax (encoder / decoder / cross)", "objective label_smoothed_ce",
                  "(240 train / 24 valid sentence pairs, bpe tokenizer", "device cpu", f"-> {run}"):
        assert words in first, (words, first)
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["vocab_size"] == config["model"]["vocab_size"]  # what --print-config said
    assert f"bpe tokenizer, {saved['model']['vocab_size']} tokens" in first
    code, out, _ = run_cli(["train-nmt", "--resume", "--out", run, "--max-steps", "10", "--no-progress"], capsys)
    assert code == 0 and "resuming at step 8 of 10" in out.splitlines()[0]
    help_text = " ".join(_help(capsys, ["train-nmt", "--help"]).split())
    for flag, words in (("--n-enc-layer", "encoder layers (default: 3)"),
                        ("--share", "shared embeddings: none, decoder"),
                        ("--max-words", "at most this many words per side"),
                        ("--vocab-size", "target size of the joint subword vocabulary (default: 2000)"),
                        ("--print-config", "print the resolved configuration")):
        assert flag in help_text and words in help_text, (flag, words)
    assert "--pad-id" not in help_text and "--bos-id" not in help_text  # the tokenizer sets them


def _help(capsys, args) -> str:
    code, out, _ = run_cli(args, capsys)
    assert code == 0
    return out
