"""Class: numbers that parse but mean nothing (NaN, infinities, out-of-range values), for every
numeric flag of every command. Each is refused while parsing, with one line naming the flag,
before anything is read or written. Also: what would be silently dropped (a KEY=VALUE key given
twice, a flag this kind of run ignores, --valid-data holding the training text, argv bytes that
are not UTF-8)."""

import json

import pytest

from .cli_cases import one_error_line, run_cli, snapshot

RUN = ["--run", "missing-run"]  # never opened: the value is refused first

CASES = [
    # train: config fields carry their ranges
    (["train", "--grad-clip", "nan"], "--grad-clip"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--min-lr", "nan"], "--min-lr"),
    (["train", "--weight-decay=-inf"], "--weight-decay"),
    (["train", "--beta1", "1"], "--beta1"),
    (["train", "--dropout", "1.5"], "--dropout"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--max-steps", "0"], "--max-steps"),
    (["train", "--warmup-steps", "-1"], "--warmup-steps"),
    (["train", "--block-size", "2.5"], "--block-size"),
    (["train", "--n-head", "0"], "--n-head"),
    (["train", "--train-fraction", "1"], "--train-fraction"),
    (["train", "--objective-option", "lam=NaN"], "--objective-option"),
    (["train", "--attention-option", "lam=inf"], "--attention-option"),
    (["train", "--attention-option", "lam=1e999"], "--attention-option"),
    # sample
    (["sample", *RUN, "--temperature", "nan"], "--temperature"),
    (["sample", *RUN, "--temperature", "inf"], "--temperature"),
    (["sample", *RUN, "--temperature", "-0.5"], "--temperature"),
    (["sample", *RUN, "--top-k", "0"], "--top-k"),
    (["sample", *RUN, "--num-tokens", "-1"], "--num-tokens"),
    (["sample", *RUN, "--num-samples", "0"], "--num-samples"),
    (["sample", *RUN, "--seed", "-3"], "--seed"),
    # eval
    (["eval", *RUN, "--batch-size", "0"], "--batch-size"),
    (["eval", *RUN, "--max-tokens", "-5"], "--max-tokens"),
    # eval-robust
    (["eval-robust", *RUN, "--sigmas", "0.5", "nan"], "--sigmas"),
    (["eval-robust", *RUN, "--rates", "1.5"], "--rates"),
    (["eval-robust", *RUN, "--seed", "-1"], "--seed"),
    (["eval-robust", *RUN, "--max-tokens", "0"], "--max-tokens"),
    # support-tokens
    (["support-tokens", *RUN, "--text", "abc", "--delta", "nan"], "--delta"),
    (["support-tokens", *RUN, "--text", "abc", "--quantile", "2"], "--quantile"),
    (["support-tokens", *RUN, "--text", "abc", "--top", "0"], "--top"),
    # diagnose
    (["diagnose", "--attention", "gpam", "--lam-neg", "nan"], "--lam-neg"),
    (["diagnose", "--attention", "gpam", "--seed", "-1"], "--seed"),
    (["diagnose", "--attention", "gpam", "--sequences", "0"], "--sequences"),
    (["diagnose", "--attention", "gpam", "--layer", "-1"], "--layer"),
    (["diagnose", "--attention", "gpam", "--lam-sweep", "1,nan"], "--lam-sweep"),
    (["diagnose", "--attention", "gpam", "--attention-option", "lam=nan"], "--attention-option"),
    # phase-diagram
    (["phase-diagram", "--kappa", "nan"], "--kappa"),
    (["phase-diagram", "--sigma-s", "0"], "--sigma-s"),
    (["phase-diagram", "--L", "1"], "--L"),
    (["phase-diagram", "--n-P", "2"], "--n-P"),
    (["phase-diagram", "--P-min", "inf"], "--P-min"),
    # experiments
    (["experiment", "baseline", "--seeds", "-1"], "--seeds"),
    (["experiment", "baseline", "--seeds", "0", "nan"], "--seeds"),
    (["reproduce", "--seeds", "-2"], "--seeds"),
    # translation
    (["train-nmt", "--lr", "nan"], "--lr"),
    (["train-nmt", "--seed", "-1"], "--seed"),
    (["translate", *RUN, "--text", "Hallo", "--beam", "0"], "--beam"),
    (["translate", *RUN, "--text", "Hallo", "--length-penalty", "inf"], "--length-penalty"),
    (["eval-nmt", *RUN, "--batch-size", "0"], "--batch-size"),
    (["eval-nmt", *RUN, "--device", "tpu"], "--device"),
    (["eval-robust", *RUN, "--block-size", "0"], "--block-size"),
    # devices: a name torch does not know, or one this machine does not have
    (["sample", *RUN, "--device", "tpu"], "--device"),
    (["eval", *RUN, "--device", "cuda:99"], "--device"),
    (["eval-robust", *RUN, "--device", "xla"], "--device"),
    (["support-tokens", *RUN, "--text", "abc", "--device", "cuda:99"], "--device"),
    (["diagnose", "--attention", "gpam", "--device", "cuda:99"], "--device"),
    (["experiment", "baseline", "--device", "tpu"], "--device"),
    # names checked before any work
    (["reproduce", "--only", "nope"], "unknown experiment 'nope'"),
    (["reproduce", "--only", "phase", "--scale", "huge"], "has no scale 'huge'"),
]


@pytest.mark.parametrize("args, flag", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_meaningless_numbers_are_refused_naming_the_flag(tmp_path, monkeypatch, capsys, args, flag):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("a file of the user's\n")
    before = snapshot(tmp_path)
    code, out, err = run_cli(args, capsys)
    assert code == 2
    line = one_error_line(err)
    assert flag in line and ("finite" in line or "must be" in line or "asked for" in line
                             or flag.startswith(("unknown", "has no"))), line
    assert snapshot(tmp_path) == before


# -- silent acceptance: a flag given twice, a flag this kind of run ignores, text that is not text --
NOT_UTF8 = "ab\udcffc"  # what Python makes of the argv bytes 61 62 ff 63 (surrogateescape)

SILENT = [
    # a KEY=VALUE flag given twice is not "the last wins", for every such flag
    (["train", "--attention", "gpam", "--attention-option", "lam=1", "--attention-option", "lam=2"],
     "--attention-option: lam given twice (lam=1 and lam=2)"),
    (["train", "--objective", "barrier", "--objective-option", "lam=0.1", "--objective-option", "lam=0.1"],
     "--objective-option: lam given twice"),
    (["train", "--attention-option", "trainable=true", "--attention-option", "lam=1", "--attention-option",
      "trainable=false"], "trainable given twice"),
    (["train-nmt", "--attention-option", "lam=1", "--attention-option", "lam=2"],
     "--attention-option: lam given twice"),
    (["train-nmt", "--enc-attention-options", "a=1", "--enc-attention-options", "a=\"x\""],
     "--enc-attention-options: a given twice"),
    (["train-nmt", "--objective-option", "label_smoothing=0.1", "--objective-option", "label_smoothing=0.2"],
     "label_smoothing given twice"),
    (["diagnose", "--attention", "gpam", "--attention-option", "lam=1", "--attention-option", "lam=0.5"],
     "lam given twice"),
    (["train", "--attention-option", "=3"], "expected KEY=VALUE with a key"),
    # flags that this kind of run would ignore
    (["eval-robust", *RUN, "--block-size", "64"], "--block-size does not apply to a probattn run"),
    (["eval-robust", "--hf-model", "some-folder", "--checkpoint", "last"], "--checkpoint does not apply to --hf-model"),
    (["support-tokens", "--hf-model", "some-folder", "--text", "abc", "--checkpoint", "best"],
     "--checkpoint does not apply to --hf-model"),
    (["diagnose", *RUN, "--seed", "3"], "--seed applies to --attention"),
    (["diagnose", *RUN, "--preset", "tiny"], "--preset applies to --attention"),
    (["diagnose", *RUN, "--preset", "tiny", "--seed", "1"], "--preset, --seed apply to --attention"),
    (["diagnose", "--attention", "gpam", "--checkpoint", "last"], "--checkpoint applies to --run"),
    (["diagnose", "--attention", "gpam", "--lam-neg", "2"], "--lam-neg sets lam- of the faithfulness sweep"),
    (["eval-nmt", *RUN, "--bootstrap", "50"], "--bootstrap sets the resamples of the paired bootstrap"),
    (["eval-nmt", *RUN, "--beam", "1", "--length-penalty", "0.6"], "--beam 1 decodes greedily"),
    (["translate", *RUN, "--text", "Hallo", "--beam", "1", "--length-penalty", "2"], "--beam 1 decodes greedily"),
    # bytes that are not UTF-8 in text given on the command line
    (["sample", *RUN, "--prompt", NOT_UTF8], "--prompt is not valid UTF-8: byte(s) 0xff at character 2"),
    (["support-tokens", *RUN, "--text", NOT_UTF8], "--text is not valid UTF-8: byte(s) 0xff"),
    (["support-tokens", "--hf-model", "some-folder", "--text", "caf\udce9 cr\udce8me"],  # Latin-1 bytes
     "--text is not valid UTF-8: byte(s) 0xe9 at character 3"),
    (["translate", *RUN, "--text", "Hallo", NOT_UTF8], "--text is not valid UTF-8"),
]


@pytest.mark.parametrize("args, message", SILENT, ids=[" ".join(a).encode("ascii", "replace").decode()
                                                        for a, _ in SILENT])
def test_what_would_be_silently_dropped_is_refused_naming_the_flag(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("a file of the user's\n")
    before = snapshot(tmp_path)
    code, out, err = run_cli(args, capsys)
    assert code == 2 and out == ""
    assert message in one_error_line(err)
    assert snapshot(tmp_path) == before


def test_the_validation_file_must_not_be_the_training_text(tmp_path, monkeypatch, capsys):
    """The same file by path, through a symlink, as a copy, and as a folder's own train split."""
    from probattn.data import default_text

    monkeypatch.chdir(tmp_path)
    text = default_text()[:20_000]
    (tmp_path / "c.txt").write_text(text)
    (tmp_path / "copy.txt").write_text(text)
    (tmp_path / "link.txt").symlink_to(tmp_path / "c.txt")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "train.txt").write_text(text)
    (tmp_path / "folder" / "valid.txt").write_text(text[:5000])
    before = snapshot(tmp_path)
    for data, valid in (("c.txt", "c.txt"), ("c.txt", "./link.txt"), ("link.txt", "copy.txt"),
                        ("folder", "folder/train.txt")):
        code, out, err = run_cli(["train", "--data", data, "--valid-data", valid, "--print-config"], capsys)
        assert code == 2 and out == ""
        assert f"the validation file {valid} holds the same text as the training data" in one_error_line(err)
    assert snapshot(tmp_path) == before
    code, out, _ = run_cli(["train", "--data", "c.txt", "--valid-data", "folder/valid.txt", "--print-config"], capsys)
    assert code == 0 and json.loads(out)["data"]["valid_data"] == "folder/valid.txt"
