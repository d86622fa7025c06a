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
    # numbers that parse but that the code cannot represent: seeds beyond 32 bits (torch takes 64,
    # NumPy's legacy generator 32, and seeds are offset), reals beyond float32 (the models' precision)
    (["train", "--seed", "18446744073709551616"], "--seed"),
    (["train", "--seed", "4294967296"], "--seed"),
    (["sample", *RUN, "--seed", "18446744073709551616"], "--seed"),
    (["eval-robust", *RUN, "--seed", "99999999999999999999999"], "--seed"),
    (["diagnose", "--attention", "gpam", "--seed", "4294967296"], "--seed"),
    (["experiment", "baseline", "--seeds", "0", "18446744073709551616"], "--seeds"),
    (["reproduce", "--seeds", "4294967296"], "--seeds"),
    (["train-nmt", "--seed", "18446744073709551616"], "--seed"),
    (["train", "--lr", "1e300"], "--lr"),
    (["train", "--weight-decay", "1e39"], "--weight-decay"),
    (["train", "--grad-clip", "1e300"], "--grad-clip"),
    (["sample", *RUN, "--temperature", "1e300"], "--temperature"),
    (["translate", *RUN, "--text", "Hallo", "--length-penalty", "1e300"], "--length-penalty"),
    (["eval-robust", *RUN, "--sigmas", "1e300"], "--sigmas"),
    (["support-tokens", *RUN, "--text", "abc", "--delta", "1e39"], "--delta"),
    (["diagnose", "--attention", "gpam", "--lam-neg", "1e300"], "--lam-neg"),
    (["phase-diagram", "--kappa", "1e39"], "--kappa"),
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


OPTION_CASES = [  # mechanism and objective options: checked when the configuration is built
    (["train", "--attention", "gpam", "--attention-option", "lam=1e308"], "gpam option lam"),
    (["train", "--attention", "gpam", "--attention-option", "tied=false", "--attention-option", "lam_neg=-1e39"],
     "gpam option lam_neg"),
    (["train", "--attention", "diff", "--n-head", "2", "--attention-option", "lambda_init=1e300"],
     "diff option lambda_init"),
    (["train", "--objective", "barrier", "--objective-option", "lam=1e300"], "objective option lam"),
    (["train", "--objective", "barrier", "--objective-option", "sigma=1e39"], "objective option sigma"),
    (["train-nmt", "--attention", "gpam", "--attention-option", "lam=1e308"], "gpam option lam"),
]


@pytest.mark.parametrize("args, name", OPTION_CASES, ids=[" ".join(a) for a, _ in OPTION_CASES])
def test_option_values_beyond_float32_are_refused(tmp_path, monkeypatch, capsys, args, name):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli([*args, "--out", "run"], capsys)
    line = one_error_line(err)
    assert code == 2 and name in line and "float32" in line, line
    assert list(tmp_path.iterdir()) == []


def test_the_largest_seed_declared_is_accepted_everywhere_it_goes(tmp_path, capsys):
    """2^32 - 1 trains (weights, batches, dropout on each rank) and samples."""
    from probattn.options import SEED

    top = str(int(SEED.hi))
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--preset", "tiny", "--max-steps", "2", "--eval-interval", "2", "--n-layer", "1",
                            "--n-embd", "16", "--batch-size", "2", "--eval-batches", "1", "--dropout", "0.1",
                            "--seed", top, "--no-progress", "--out", run], capsys)
    assert code == 0, err
    code, out, err = run_cli(["sample", "--run", run, "--seed", top, "--num-tokens", "5"], capsys)
    assert code == 0 and out, err
    code, _, err = run_cli(["eval-robust", "--run", run, "--seed", top, "--max-tokens", "64", "--sigmas", "0.1",
                            "--rates", "0.1", "--kinds", "swap", "--json", tmp_path / "r.json"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("temperature", [1e-30, 1e-40, 1e-300, 5e-324])
@pytest.mark.parametrize("top_k", [None, 3])
def test_a_temperature_that_underflows_samples_the_greedy_limit(temperature, top_k):
    """T -> 0+ is greedy decoding: a tiny (even subnormal) temperature gives the argmax tokens,
    computed here independently with temperature 0, and never NaN probabilities."""
    import torch

    from probattn.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)).eval()
    prompt = torch.tensor([[1, 2, 3]])
    greedy = model.generate(prompt, 12, temperature=0)
    tiny = model.generate(prompt, 12, temperature=temperature, top_k=top_k,
                          generator=torch.Generator().manual_seed(1))
    assert torch.equal(tiny, greedy)


# -- sizes checked before they are allocated ---------------------------------------------------------
TINY = ["--preset", "tiny", "--max-steps", "2", "--eval-interval", "2", "--n-layer", "1", "--n-embd", "16",
        "--batch-size", "2", "--eval-batches", "1", "--no-progress"]

SIZE_CASES = [  # (command, the flag the one line must name); refused before any weight or batch exists
    (["train", *TINY, "--batch-size", "1000000000"], "--batch-size"),
    (["train", *TINY, "--n-layer", "1000000000000"], "--n-layer"),  # refused from the shape: never built
    (["train", *TINY, "--block-size", "100000000000000000000"], "--block-size"),  # beyond int64 elements
    (["train", *TINY, "--n-embd", "1000000", "--n-head", "1"], "--n-embd"),
    (["train", *TINY, "--eval-batches", "100000000000"], "--eval-batches"),
    (["phase-diagram", "--L", "8", "--n-P", "5000000"], "--n-P"),
    (["phase-diagram", "--L", "8", "--grid", "P:1:100:5000000", "--grid", "kappa:0.1:1:10"], "--grid"),
    (["phase-diagram", "--L", "8", "--n-P", "1000000", "--grid", "sigma_s:0.1:2:40"], "--grid"),
]


@pytest.mark.parametrize("args, flag", SIZE_CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in SIZE_CASES])
def test_sizes_that_cannot_fit_are_refused_before_allocating(tmp_path, monkeypatch, capsys, args, flag):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBATTN_MEMORY_BYTES", str(16 * 10**9))  # a 16 GB machine, whatever runs the test
    code, _, err = run_cli([*args, "--out", "out"], capsys)
    line = one_error_line(err)
    assert code == 2 and "needs about" in line and "16.0 GB this machine has available" in line, line
    assert flag in line, line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))


@pytest.mark.parametrize("attention", ["softmax", "gpam"])
@pytest.mark.parametrize("shape", [(8, 64, 2, 2, 64), (4, 128, 3, 4, 128)])
def test_the_training_estimate_matches_what_training_holds(attention, shape):
    """Parameters counted on the meta device equal the real count; the activation estimate is
    within a factor of two of the bytes autograd really saves for the backward pass (summed by a
    saved-tensors hook); weights, gradients and AdamW's moments are four copies of the parameters."""
    import torch

    from probattn.model import GPT, GPTConfig
    from probattn.train.footprint import count_parameters, training_bytes

    B, T, L, H, W = shape
    cfg = GPTConfig(vocab_size=65, block_size=T, n_layer=L, n_head=H, n_embd=W, attention=attention)
    model = GPT(cfg)
    n = count_parameters(GPT, cfg)
    assert n == sum(p.numel() for p in model.parameters())
    saved = {}

    def pack(t):
        saved[(t.data_ptr(), t.dtype, tuple(t.shape))] = t.numel() * t.element_size()
        return t

    x = torch.randint(0, 65, (B, T))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, loss = model(x, x)
    opt = torch.optim.AdamW(model.parameters())
    loss.backward()
    opt.step()
    state = sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values() if t.dim())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters())
    assert state + grads == 3 * 4 * n
    activations = training_bytes(n, cfg, B, eval_batches=0) - 4 * 4 * n
    assert 0.5 < activations / sum(saved.values()) < 2


def test_a_run_that_fits_is_not_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBATTN_MEMORY_BYTES", str(200 * 10**6))
    assert run_cli(["train", *TINY, "--out", "run"], capsys)[0] == 0


def test_an_nmt_vocabulary_or_batch_beyond_memory(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sacrebleu")
    from probattn.nmt.subword import SubwordTokenizer

    from .test_nmt_cli import corpus, smoke

    data = corpus(tmp_path / "data")
    monkeypatch.setenv("PROBATTN_MEMORY_BYTES", str(16 * 10**9))
    code, _, err = run_cli(smoke(data, tmp_path / "big", "--batch-size", "1000000000"), capsys)
    line = one_error_line(err)
    assert code == 2 and "--batch-size" in line and "needs about" in line
    # a vocabulary far beyond what the corpus can make: the same tokenizer as a merely large one
    # (the BPE trainer sized its tables by the number asked for: 70 GB for 10^9)
    run = tmp_path / "run"
    code, _, err = run_cli(smoke(data, run, "--vocab-size", "1000000000", "--max-steps", "1"), capsys)
    assert code == 0, err
    texts = ["Eins zwei drei.", "One two three.", "Vier fünf sechs sieben."] * 5
    import probattn.nmt.subword as subword

    capped = SubwordTokenizer.train(texts, 10**9)
    monkeypatch.setattr(subword, "_most_tokens", lambda texts: 10**9)
    uncapped = SubwordTokenizer.train(texts, 50_000)
    assert capped.fingerprint() == uncapped.fingerprint() and capped.vocab_size < 200
    code, _, err = run_cli(["translate", "--run", run, "--text", "Eins.", "--beam", "100000000"], capsys)
    line = one_error_line(err)
    assert code == 2 and "--beam" in line and "needs about" in line


def test_a_bootstrap_beyond_memory_is_refused(monkeypatch):
    pytest.importorskip("sacrebleu")
    from probattn.errors import ConfigError
    from probattn.nmt.bleu import paired_bootstrap

    monkeypatch.setenv("PROBATTN_MEMORY_BYTES", str(10**9))
    with pytest.raises(ConfigError, match="lower --bootstrap"):
        paired_bootstrap(["a b"] * 1000, ["a c"] * 1000, ["a b"] * 1000, n=10**9)


def test_the_barrier_rank_is_bounded_by_the_width(tmp_path, capsys):
    args = ["train", *TINY, "--objective", "barrier", "--out", tmp_path / "run"]
    code, _, err = run_cli([*args, "--objective-option", "rank=17"], capsys)
    line = one_error_line(err)
    assert code == 2 and "rank must be at most the embedding width n_embd = 16" in line
    assert run_cli([*args, "--objective-option", "rank=16"], capsys)[0] == 0


# -- corpora: only regular files, and only what fits ---------------------------------------------------
def _special(tmp_path, kind):
    path = tmp_path / kind
    if kind == "fifo":
        import os

        os.mkfifo(path)
    elif kind == "socket":
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        return path, s
    else:
        path.mkdir()
    return path, None


@pytest.mark.parametrize("kind", ["fifo", "socket", "folder"])
@pytest.mark.parametrize("command", [
    ["train", *TINY, "--out", "run", "--data"],
    ["eval", "--run", "missing", "--data"],  # the run is loaded first: a missing run is its own error
    ["translate", "--run", "missing", "--file"],
    ["support-tokens", "--run", "missing", "--file"],
], ids=lambda c: c[0])
def test_a_corpus_or_text_that_is_not_a_regular_file(tmp_path, monkeypatch, capsys, kind, command):
    monkeypatch.chdir(tmp_path)
    path, keep = _special(tmp_path, kind)
    try:
        code, _, err = run_cli([*command, path.name], capsys)
    finally:
        if keep is not None:
            keep.close()
    line = one_error_line(err)
    assert code != 0
    if command[0] == "eval":
        assert "run folder not found" in line
    elif kind == "folder" and command[0] == "train":
        assert "needs train.txt and valid.txt" in line
    elif kind == "folder":
        assert "is a folder" in line
    else:
        assert "not a regular file" in line, line
    assert not (tmp_path / "run").exists()


def test_a_device_is_never_read_as_a_corpus(tmp_path, monkeypatch, capsys):
    """What /dev/zero is (a character device that never ends), without reading the real one."""
    import os
    import stat

    fake = tmp_path / "zero"
    fake.write_text("x" * 100)
    real = os.stat

    def as_device(p, *a, **kw):
        st = real(p, *a, **kw)
        if str(p).endswith("zero"):
            fields = list(st)
            fields[0] = stat.S_IFCHR | 0o666
            return os.stat_result(fields)
        return st

    monkeypatch.setattr(os, "stat", as_device)
    code, _, err = run_cli(["train", *TINY, "--data", fake, "--out", tmp_path / "run"], capsys)
    monkeypatch.undo()
    assert code == 2 and "not a regular file" in one_error_line(err)


def test_a_corpus_larger_than_memory_is_refused_before_reading(tmp_path, monkeypatch, capsys):
    big = tmp_path / "big.txt"
    big.write_text("abc " * 250_000)  # 1 MB: with its tokens about 40 MB
    monkeypatch.setenv("PROBATTN_MEMORY_BYTES", str(10 * 10**6))
    code, _, err = run_cli(["train", *TINY, "--data", big, "--out", tmp_path / "run"], capsys)
    line = one_error_line(err)
    assert code == 2 and "reading" in line and "1.0 MB" in line and "10.0 MB this machine has" in line, line
    assert "use a smaller corpus file" in line


def test_the_memory_of_the_machine_is_read_portably(monkeypatch):
    import probattn.memory as memory

    monkeypatch.delenv(memory.MEMORY_ENV, raising=False)
    found = memory.available_memory()
    assert found is None or found > 10**6
    monkeypatch.setattr(memory, "_meminfo", lambda field: None)  # no /proc (macOS, BSD): sysconf
    import os

    expected = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert memory.available_memory() == expected
    monkeypatch.setattr(memory.os, "sysconf", lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert memory.available_memory() is None  # nothing to read: no check, never a false refusal
    memory.check_fits(10**30, "anything", "nothing")
    monkeypatch.setenv(memory.MEMORY_ENV, "lots")
    with pytest.raises(memory.ConfigError, match="PROBATTN_MEMORY_BYTES"):
        memory.available_memory()
    assert [memory.human_bytes(n) for n in (512, 1_500, 2.5e9, 3e12, 7.2e20)] == \
        ["512 bytes", "1.5 KB", "2.5 GB", "3.0 TB", "7.2e+08 TB"]

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
