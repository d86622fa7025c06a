"""Translation commands end to end on a generated parallel folder (unit-test data only), and one
clear error line, with nothing written, for every kind of bad input the issue lists."""

from __future__ import annotations

import json

import pytest

from probattn.nmt.subword import SubwordTokenizer

from .cli_cases import run_cli

pytest.importorskip("sacrebleu")

WORDS = [("eins", "one"), ("zwei", "two"), ("drei", "three"), ("vier", "four"), ("fünf", "five"), ("sechs", "six")]


def corpus(folder, n_train=240):
    folder.mkdir()
    splits = {"train": range(n_train), "valid": range(500, 524), "test": range(700, 724)}
    for split, seeds in splits.items():
        de, en = [], []
        for s in seeds:
            picks = [WORDS[(s * 7 + j * 3) % 6] for j in range(1 + s % 4)]
            de.append(" ".join(w for w, _ in picks).capitalize() + ".")
            en.append(" ".join(w for _, w in picks).capitalize() + ".")
        (folder / f"{split}.de").write_text("\n".join(de) + "\n", encoding="utf-8")
        (folder / f"{split}.en").write_text("\n".join(en) + "\n", encoding="utf-8")
    return folder


def smoke(data, out, *extra):
    return ["train-nmt", "--preset", "smoke", "--data", data, "--out", out, "--max-steps", "8",
            "--eval-interval", "4", "--vocab-size", "40", "--no-progress", *extra]


def one_error(code, err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and lines[0].startswith("probattn: error:"), err
    return lines[0]


def test_train_resume_translate_eval(tmp_path, capsys):
    data, run = corpus(tmp_path / "data"), tmp_path / "run"
    code, out, err = run_cli(smoke(data, run, "--attention", "gpam", "--norm", "post"), capsys)
    assert code == 0 and "best val nll" in out, err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["task"] == "nmt" and cfg["model"]["cross_attention"] == "gpam" and cfg["model"]["norm"] == "post"
    code, out, err = run_cli(smoke(data, run, "--attention", "gpam", "--norm", "post", "--max-steps", "12",
                                   "--resume"), capsys)
    assert code == 0, err
    assert max(json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()) == 12
    code, out, err = run_cli(["translate", "--run", run, "--text", "Eins zwei.", "Drei.", "--beam", "2"], capsys)
    assert code == 0 and len(out.splitlines()) == 2, err
    (tmp_path / "in.de").write_text("Eins.\nZwei drei.\n", encoding="utf-8")
    code, _, err = run_cli(["translate", "--run", run, "--file", tmp_path / "in.de", "--output", tmp_path / "o.en"],
                           capsys)
    assert code == 0 and len((tmp_path / "o.en").read_text().splitlines()) == 2, err
    code, out, err = run_cli(["eval-nmt", "--run", run, "--split", "test", "--beam", "1", "--json",
                              tmp_path / "s.json"], capsys)
    assert code == 0 and "chrF" in out and "tok:13a" in out, err
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["sentences"] == 24 and 0 <= scores["bleu"] <= 100
    # a second system on the same data: paired bootstrap of the difference
    other = tmp_path / "other"
    assert run_cli(smoke(data, other), capsys)[0] == 0
    code, out, err = run_cli(["eval-nmt", "--run", run, "--compare", other, "--split", "test", "--beam", "1",
                              "--bootstrap", "50", "--json", tmp_path / "c.json"], capsys)
    assert code == 0 and "bootstrap interval" in out, err
    boot = json.loads((tmp_path / "c.json").read_text())["compare"]["bootstrap"]["bleu"]
    assert boot["delta"] == pytest.approx(json.loads((tmp_path / "c.json").read_text())["compare"]["scores"]["bleu"]
                                          - scores["bleu"])


def test_bad_input_gives_one_error_line_and_writes_nothing(tmp_path, capsys):
    data, run = corpus(tmp_path / "data"), tmp_path / "run"
    assert run_cli(smoke(data, run), capsys)[0] == 0
    # parallel files with different line counts: the run folder is not created
    bad = corpus(tmp_path / "bad")
    (bad / "train.en").write_text("One.\n", encoding="utf-8")
    line = one_error(*run_cli(smoke(bad, tmp_path / "never"), capsys)[::2])
    assert "lines but" in line and not (tmp_path / "never").exists()
    (bad / "train.en").write_text((data / "train.en").read_text().replace("One.", "", 1), encoding="utf-8")
    # an empty line in the input file
    (tmp_path / "gap.de").write_text("Eins.\n\nZwei.\n", encoding="utf-8")
    assert "line 2 is empty" in one_error(*run_cli(["translate", "--run", run, "--file", tmp_path / "gap.de",
                                                    "--output", tmp_path / "gap.en"], capsys)[::2])
    assert not (tmp_path / "gap.en").exists()
    # a sentence longer than the model's context
    assert "context" in one_error(*run_cli(["translate", "--run", run, "--text", " ".join(["eins"] * 60)],
                                           capsys)[::2])
    # unknown corpus, unknown language pair
    assert "unknown parallel corpus" in one_error(*run_cli(smoke("europarl", tmp_path / "n1"), capsys)[::2])
    assert "language pair" in one_error(*run_cli(smoke(data, tmp_path / "n2", "--src-lang", "fr"), capsys)[::2])
    # an LM run given to translate
    lm = tmp_path / "lm"
    assert run_cli(["train", "--preset", "tiny", "--max-steps", "2", "--eval-interval", "2", "--n-layer", "1",
                    "--no-progress", "--out", lm], capsys)[0] == 0
    assert "language-model run" in one_error(*run_cli(["translate", "--run", lm, "--text", "Eins."], capsys)[::2])
    # a tokenizer file that does not match the checkpoint
    other = SubwordTokenizer.train(["ganz andere Wörter", "quite other words"], vocab_size=30)
    (run / "vocab.json").write_text(json.dumps(other.to_dict()), encoding="utf-8")
    assert "does not match the checkpoint" in one_error(*run_cli(["translate", "--run", run, "--text", "Eins."],
                                                                 capsys)[::2])
    assert "exactly one of" in one_error(*run_cli(["translate", "--run", run], capsys)[::2])


@pytest.mark.parametrize("flag,value", [("--limit", "0"), ("--limit", "x"), ("--bootstrap", "1.5")])
def test_count_flags_are_positive_integers(flag, value, capsys):
    code, _, err = run_cli(["eval-nmt", "--run", "nowhere", flag, value], capsys)
    assert code == 2 and f"{flag} must be a positive integer, got '{value}'" in one_error(code, err)


def test_resume_continues_exactly(tmp_path, capsys):
    """8 steps straight = 4 steps, stop, resume to 8 (data order, dropout and optimiser restored)."""
    import torch

    data = corpus(tmp_path / "data")
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--dropout", "0.1", "--eval-interval", "4", "--max-steps", "8"]
    assert run_cli(smoke(data, straight, *common), capsys)[0] == 0
    assert run_cli(smoke(data, split, *common[:-1], "4"), capsys)[0] == 0
    assert run_cli(smoke(data, split, *common, "--resume"), capsys)[0] == 0
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(split / "checkpoints" / "last.pt", weights_only=True)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_split_nll_equals_a_pair_by_pair_sum(tmp_path, capsys):
    import torch

    from probattn.nmt.runs import load_nmt_run, split_nll

    data, run_dir = corpus(tmp_path / "data"), tmp_path / "run"
    assert run_cli(smoke(data, run_dir, "--attention", "gpam"), capsys)[0] == 0
    run = load_nmt_run(run_dir)
    pairs = [("Eins zwei.", "One two."), ("Drei vier fünf.", "Three four five."), ("Sechs.", "Six.")]
    total, tokens = 0.0, 0
    with torch.no_grad():  # one pair at a time, no padding: the batched, padded sum must equal it
        for de, en in pairs:
            src = torch.tensor([run.tokenizer.encode(de) + [run.model.config.eos_id]])
            tgt = run.tokenizer.encode(en)
            logits, _ = run.model(src, torch.tensor([[run.model.config.bos_id] + tgt]))
            logp = torch.log_softmax(logits[0].double(), -1)
            total -= sum(float(logp[i, t]) for i, t in enumerate(tgt + [run.model.config.eos_id]))
            tokens += len(tgt) + 1
    got = split_nll(run, pairs, batch_size=2)
    assert got["nll_tokens"] == tokens and got["nll_pairs"] == 3
    assert got["nll"] == pytest.approx(total / tokens, rel=1e-5)


def test_two_process_data_parallel_matches_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo) at 8 pairs each == 1 process at 16 pairs: the same
    pairs, and a loss normalised by the global batch's target tokens on every rank."""
    import os
    import subprocess
    import sys

    from probattn.train.metrics import read_jsonl

    from .conftest import REPO

    data = corpus(tmp_path / "data")
    common = ["--preset", "smoke", "--data", str(data), "--max-steps", "6", "--eval-interval", "3",
              "--log-interval", "1", "--vocab-size", "40", "--dropout", "0", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    runs = {"ddp": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "probattn", "train-nmt", "--batch-size", "8"],
            "one": [sys.executable, "-m", "probattn", "train-nmt", "--batch-size", "16"]}
    for name, argv in runs.items():
        done = subprocess.run([*argv, "--out", str(tmp_path / name), *common], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    for split in ("train", "valid"):
        a = [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "ddp" / "metrics.jsonl") if r["split"] == split]
        b = [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "one" / "metrics.jsonl") if r["split"] == split]
        assert len(a) == len(b) > 1
        for (s1, l1), (s2, l2) in zip(a, b):
            assert s1 == s2 and l1 == pytest.approx(l2, abs=1e-5)
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2
