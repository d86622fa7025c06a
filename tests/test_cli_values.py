"""Class: numbers that parse but mean nothing (NaN, infinities, out-of-range values), for every
numeric flag of every command. Each is refused while parsing, with one line naming the flag,
before anything is read or written."""

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
