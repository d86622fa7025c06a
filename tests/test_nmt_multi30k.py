"""Multi30k by name: made-up files with the real names and layout (no network; the download is a
file:// URL through the real fetch), the pinned digests, languages and test sets by name, whole
splits scored; and the real files in ../shared/data where they are present."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from probattn.errors import DataError
from probattn.nmt import multi30k
from probattn.nmt.corpus import load_parallel

from .cli_cases import run_cli

WORDS = {"en": ["one", "two", "three", "four"], "de": ["eins", "zwei", "drei", "vier"],
         "fr": ["un", "deux", "trois", "quatre"], "cs": ["jedna", "dva", "tri", "ctyri"]}
SIZES = {"train": 60, "val": 8, "test_2016_flickr": 6, "test_2017_flickr": 5, "test_2018_flickr": 7,
         "test_2017_mscoco": 4}


def sentence(lang: str, stem: str, i: int) -> str:
    """The i-th made-up sentence of a split in one language (the same words in each language)."""
    offset = sorted(SIZES).index(stem) * 100
    n = 1 + (i + offset) % 5
    words = [WORDS[lang][(i * 3 + j + offset) % 4] for j in range(n)]
    return " ".join(words).capitalize() + "."


def make_files(folder, gz: bool = True) -> dict[str, str]:
    """Every split in every language it has upstream; returns their digests (the pinned ones stand
    for the real files, so the tests pin these instead)."""
    folder.mkdir(parents=True, exist_ok=True)
    digests = {}
    for stem, n in SIZES.items():
        for lang in multi30k.LANGS:
            if lang == "cs" and stem in multi30k.NO_CZECH:
                continue
            text = "".join(sentence(lang, stem, i) + "\n" for i in range(n)).encode("utf-8")
            name = f"{stem}.{lang}.gz"
            raw = gzip.compress(text, mtime=0) if gz else text
            (folder / (name if gz else name[:-3])).write_bytes(raw)
            digests[name] = hashlib.sha256(raw).hexdigest()
    return digests


@pytest.fixture
def local(tmp_path, monkeypatch):
    """A data dir holding made-up multi30k files whose digests are the pinned ones."""
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBATTN_DATA", raising=False)
    digests = make_files(tmp_path / "data" / "multi30k")
    monkeypatch.setattr(multi30k, "SHA256", digests)
    return tmp_path / "data"


def test_the_splits_by_name_in_any_direction(local):
    c = load_parallel("multi30k", "en", "de", (str(local),), download=False)
    assert c.sizes() == {"train": 60, "valid": 8, "test": 6}
    assert (c.src_lang, c.tgt_lang) == ("en", "de")
    assert c.train[3] == (sentence("en", "train", 3), sentence("de", "train", 3))
    assert c.test[0] == (sentence("en", "test_2016_flickr", 0), sentence("de", "test_2016_flickr", 0))
    fr_cs = load_parallel("multi30k", "fr", "cs", (str(local),), download=False, test_set="test2018")
    assert fr_cs.sizes()["test"] == 7 and fr_cs.valid[2] == (sentence("fr", "val", 2), sentence("cs", "val", 2))
    for name, stem in multi30k.TEST_SETS.items():
        c = load_parallel("multi30k", "de", "en", (str(local),), download=False, test_set=name)
        assert len(c.test) == SIZES[stem] and c.test[-1][1] == sentence("en", stem, SIZES[stem] - 1)


def test_a_length_filter_touches_train_only(local):
    c = load_parallel("multi30k", "de", "en", (str(local),), download=False, max_words=2)
    assert all(len(s.split()) <= 2 for s, _ in c.train) and len(c.train) < 60
    assert len(c.valid) == 8 and len(c.test) == 6  # valid and test are scored whole
    assert any("train only" in n for n in c.notes)


@pytest.mark.parametrize("src, tgt, test_set, message", [
    ("de", "xx", None, "no language 'xx'; available: en, de, fr, cs"),
    ("de", "de", None, "both 'de'"),
    ("de", "en", "test2019", "no test set 'test2019'; available: test2016, test2017, test2018, mscoco2017"),
    ("cs", "en", "test2017", "has no Czech side; Czech test sets: test2016, test2018"),
    ("en", "cs", "mscoco2017", "has no Czech side"),
])
def test_a_language_or_test_set_that_does_not_exist_is_named(local, src, tgt, test_set, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_parallel("multi30k", src, tgt, (str(local),), download=False, test_set=test_set)


def test_a_test_set_is_refused_for_other_corpora(tmp_path):
    with pytest.raises(DataError, match="multi30k only"):
        load_parallel(str(tmp_path), "de", "en", test_set="test2017")


def test_a_changed_file_is_refused_never_trained_on(local):
    path = local / "multi30k" / "val.de.gz"
    path.write_bytes(gzip.compress(b"Etwas anderes.\n" * 8, mtime=0))
    with pytest.raises(DataError, match="is not the published Multi30k file"):
        load_parallel("multi30k", "de", "en", (str(local),), download=False)


def test_ungzipped_copies_are_used_and_said_unverified(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    make_files(tmp_path / "plain" / "multi30k", gz=False)
    c = load_parallel("multi30k", "en", "fr", (str(tmp_path / "plain"),), download=False)
    assert c.sizes() == {"train": 60, "valid": 8, "test": 6}
    assert any("not checked against the digest" in n for n in c.notes)


def test_download_fetches_only_the_needed_files_into_the_cache_once(tmp_path, monkeypatch):
    upstream = tmp_path / "upstream"
    digests = make_files(upstream)
    monkeypatch.setattr(multi30k, "SHA256", digests)
    monkeypatch.setattr(multi30k, "URL", upstream.as_uri() + "/{}")
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBATTN_DATA", raising=False)
    c = load_parallel("multi30k", "en", "de", download=True)
    assert c.sizes() == {"train": 60, "valid": 8, "test": 6}
    got = sorted(p.name for p in (tmp_path / "cache" / "multi30k").iterdir())
    assert got == sorted(f"{s}.{lang}.gz" for s in ("train", "val", "test_2016_flickr") for lang in ("en", "de"))
    # found in the cache now: no network needed
    monkeypatch.setattr(multi30k, "URL", "file:///nonexistent/{}")
    assert load_parallel("multi30k", "en", "de", download=False).sizes() == c.sizes()


def test_a_download_that_does_not_match_the_digest_writes_nothing(tmp_path, monkeypatch):
    upstream = tmp_path / "upstream"
    digests = make_files(upstream)
    monkeypatch.setattr(multi30k, "SHA256", {k: "0" * 64 for k in digests})
    monkeypatch.setattr(multi30k, "URL", upstream.as_uri() + "/{}")
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBATTN_DATA", raising=False)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_parallel("multi30k", "en", "de", download=True)
    assert not list((tmp_path / "cache").rglob("*.gz"))


def test_cli_no_download_and_bad_names_are_one_error_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tokenizers")
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBATTN_DATA", raising=False)
    out = tmp_path / "run"
    base = ["train-nmt", "--preset", "smoke", "--data", "multi30k", "--out", str(out), "--no-progress"]
    cases = [
        (base + ["--no-download"], "multi30k file train.de.gz not found in the data path"),
        (base + ["--src-lang", "en", "--tgt-lang", "xx", "--no-download"], "no language 'xx'"),
        (base + ["--test-set", "test1999", "--no-download"], "no test set 'test1999'"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(argv, capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code != 0 and len(lines) == 1 and lines[0].startswith("probattn: error:"), err
        assert message in lines[0], lines[0]
        assert not out.exists() and not (tmp_path / "cache" / "multi30k").exists()


def test_print_config_without_the_corpus_downloads_nothing(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tokenizers")
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBATTN_DATA", raising=False)
    monkeypatch.setattr(multi30k, "URL", "file:///nonexistent/{}")  # a download would fail loudly
    code, out, err = run_cli(["train-nmt", "--preset", "multi30k", "--print-config"], capsys)
    assert code == 0 and json.loads(out)["data"]["corpus"] == "multi30k", err
    assert "probattn: note:" in err and "not found in the data path" in err
    assert not (tmp_path / "cache" / "multi30k").exists()


def test_train_and_score_whole_splits_on_made_up_files(local, tmp_path, capsys):
    pytest.importorskip("sacrebleu")
    run = tmp_path / "run"
    code, out, err = run_cli(["train-nmt", "--preset", "smoke", "--data", "multi30k", "--data-dir", str(local),
                              "--src-lang", "fr", "--tgt-lang", "en", "--max-words", "100", "--vocab-size", "60",
                              "--max-steps", "4", "--eval-interval", "2", "--out", str(run), "--no-progress"],
                             capsys)
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["data"]["corpus"] == "multi30k"
    for test_set, n in (("test2016", 6), ("test2018", 7), ("mscoco2017", 4)):
        code, out, err = run_cli(["eval-nmt", "--run", str(run), "--split", "test", "--test-set", test_set,
                                  "--beam", "1", "--json", str(tmp_path / f"{test_set}.json")], capsys)
        assert code == 0, err
        got = json.loads((tmp_path / f"{test_set}.json").read_text())
        assert got["sentences"] == n and got["test_set"] == test_set and got["nll_pairs"] == n
    code, _, err = run_cli(["eval-nmt", "--run", str(run), "--split", "valid", "--test-set", "test2017"], capsys)
    assert code != 0 and "test split only" in err


def test_real_files_when_present(shared_data):
    data = shared_data
    if not (data / "multi30k" / "train.de.gz").is_file():
        pytest.skip("../shared/data/multi30k is not beside this checkout")
    c = load_parallel("multi30k", "de", "en", (str(data),), download=False)  # every digest checked
    assert c.sizes() == {"train": 29000, "valid": 1014, "test": 1000}
    sizes = {name: len(load_parallel("multi30k", "en", "fr", (str(data),), download=False, test_set=name).test)
             for name in multi30k.TEST_SETS}
    assert sizes == {"test2016": 1000, "test2017": 1000, "test2018": 1071, "mscoco2017": 461}
    assert len(load_parallel("multi30k", "cs", "en", (str(data),), download=False, test_set="test2018").test) == 1071
