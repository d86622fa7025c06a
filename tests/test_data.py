"""Corpora, tokenizers and batching."""

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
import torch

from probattn.data import (
    ByteTokenizer,
    CharTokenizer,
    RandomWindows,
    build_tokenizer,
    corpora,
    default_text,
    fixed_eval_batches,
    load_corpus,
    sequential_windows,
    tokenizer_from_dict,
)
from probattn.data.corpora import NAMED_CORPORA
from probattn.errors import DataError


# -- tokenizers ---------------------------------------------------------------------------------
def test_char_tokenizer_roundtrip_and_vocabulary_order():
    tok = CharTokenizer.from_text("hello world", "éü")
    assert tok.chars == sorted(set("hello worldéü"))
    ids = tok.encode("hold éü")
    assert ids.dtype == torch.int64
    assert ids.tolist() == [tok.chars.index(c) for c in "hold éü"]
    assert tok.decode(ids) == "hold éü"
    again = tokenizer_from_dict(tok.to_dict())
    assert again.chars == tok.chars


def test_char_tokenizer_names_unknown_characters():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(DataError, match="outside the model's vocabulary: 'x', 'z'"):
        tok.encode("abxz")
    assert tok.unknown_chars("abxz") == ["x", "z"]


def test_byte_tokenizer_handles_any_text():
    tok = build_tokenizer("byte")
    text = "naïve ☃ text"
    ids = tok.encode(text)
    assert ids.max() < 256 and len(ids) == len(text.encode())
    assert tok.decode(ids) == text
    assert isinstance(tokenizer_from_dict(tok.to_dict()), ByteTokenizer)


# -- corpora ------------------------------------------------------------------------------------
def test_embedded_default_is_real_english_text():
    text = default_text()
    assert len(text) > 200_000
    words = text.lower().split()
    for common in ("the", "of", "and", "is", "function"):
        assert words.count(common) > 100
    c = load_corpus("default")
    assert c.train + c.valid == text and len(c.train) == int(0.9 * len(text))
    assert load_corpus("python-docs").valid == c.valid  # deterministic


def test_file_folder_and_valid_override(tmp_path, text_file):
    c = load_corpus(str(text_file), train_fraction=0.8)
    assert c.name == "corpus" and len(c.train) == int(0.8 * len(text_file.read_text()))
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "train.txt").write_text("train text " * 50)
    (folder / "valid.txt").write_text("valid text " * 20)
    (folder / "test.txt").write_text("test text " * 20)
    f = load_corpus(str(folder))
    assert f.train.startswith("train") and f.valid.startswith("valid") and f.test.startswith("test")
    other = tmp_path / "other.txt"
    other.write_text("held out")
    o = load_corpus(str(text_file), valid=str(other))
    assert o.train == text_file.read_text() and o.valid == "held out"


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"   \n\n", "empty"),
    (b"caf\xe9 au lait", "not UTF-8 text .*0xe9 at offset 3"),
])
def test_bad_files_give_one_clear_error(tmp_path, content, message):
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_corpus(str(p))


def test_missing_and_unknown_corpora(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_corpus(str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="unknown corpus 'nosuchname'"):
        load_corpus("nosuchname")
    empty_dir = tmp_path / "d"
    empty_dir.mkdir()
    with pytest.raises(DataError, match="needs train.txt and valid.txt"):
        load_corpus(str(empty_dir))


def _data_dir(root: Path) -> Path:
    """A data folder laid out like the shared one: Tiny Shakespeare whole, WikiText-2 without train."""
    (root / "tinyshakespeare").mkdir(parents=True)
    speech = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    (root / "tinyshakespeare" / "input.txt").write_text(speech * 40)
    (root / "wikitext-2").mkdir()
    (root / "wikitext-2" / "valid.txt").write_text(" = Valkyria = \n the game began development in 2010 .\n" * 20)
    (root / "wikitext-2" / "test.txt").write_text(" = Robert Boulter = \n an English actor .\n" * 20)
    return root


def test_named_corpora_from_a_data_dir_and_env(monkeypatch, tmp_path):
    data = _data_dir(tmp_path / "data")
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBATTN_DATA", raising=False)
    c = load_corpus("tinyshakespeare", data_dirs=[str(data)], download=False)
    text = (data / "tinyshakespeare" / "input.txt").read_text()
    assert c.train + c.valid == text and len(c.train) == int(0.9 * len(text))
    monkeypatch.setenv("PROBATTN_DATA", str(data))
    assert load_corpus("tinyshakespeare", download=False).valid == c.valid
    # WikiText-2 with valid and test only: a clear pointer to --valid-data
    with pytest.raises(DataError, match="no train split.*--valid-data"):
        load_corpus("wikitext-2", download=False)
    w = load_corpus("wikitext-2", valid=str(data / "wikitext-2" / "test.txt"), download=False)
    assert w.train == (data / "wikitext-2" / "valid.txt").read_text()
    assert w.valid == (data / "wikitext-2" / "test.txt").read_text()
    monkeypatch.delenv("PROBATTN_DATA")
    with pytest.raises(DataError, match="not found in the data path.*downloads are off"):
        load_corpus("wikitext-2-raw", download=False)


def test_the_real_tiny_shakespeare_where_it_is(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    c = load_corpus("tinyshakespeare", data_dirs=[str(shared_data)], download=False)
    assert c.train.startswith("First Citizen:") and len(c.train) + len(c.valid) == 1_115_394
    assert len(set(c.train + c.valid)) == 65  # nanoGPT's shakespeare_char vocabulary
    digest = hashlib.sha256((shared_data / "tinyshakespeare" / "input.txt").read_bytes()).hexdigest()
    assert digest == NAMED_CORPORA["tinyshakespeare"].sha256


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_download_verifies_checksum_and_caches(monkeypatch, tmp_path):
    payload = b"To be, or not to be, that is the question.\n" * 50
    spec = corpora.NamedCorpus(
        name="fake", description="", files={"all": ("input.txt",)}, folders=("fake",),
        urls=("https://mirror-a.invalid/x", "https://mirror-b.invalid/x"),
        sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(corpora.NAMED_CORPORA, "fake", spec)
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    served = []

    def urlopen(url, timeout):
        served.append(url)
        if "mirror-a" in url:
            raise OSError("connection refused")
        return _FakeResponse(payload)

    monkeypatch.setattr(corpora.urllib.request, "urlopen", urlopen)
    c = load_corpus("fake")
    assert c.train + c.valid == payload.decode()
    assert served == list(spec.urls)  # first mirror failed, second served
    assert (tmp_path / "cache" / "fake" / "input.txt").read_bytes() == payload
    served.clear()
    load_corpus("fake")  # cached: no network
    assert served == []


def test_download_rejects_a_corrupted_payload_and_writes_nothing(monkeypatch, tmp_path):
    good = io.BytesIO()
    with zipfile.ZipFile(good, "w") as zf:
        for s in ("train", "valid", "test"):
            zf.writestr(f"w/{s}.txt", f"{s} text")
    spec = corpora.NamedCorpus(
        name="fakezip", description="", files={s: (f"{s}.txt",) for s in ("train", "valid", "test")},
        folders=("fakezip",), urls=("https://x.invalid/w.zip",),
        sha256=hashlib.sha256(good.getvalue()).hexdigest(),
        members={s: f"w/{s}.txt" for s in ("train", "valid", "test")})
    monkeypatch.setitem(corpora.NAMED_CORPORA, "fakezip", spec)
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(corpora.urllib.request, "urlopen",
                        lambda url, timeout: _FakeResponse(b"tampered" + good.getvalue()))
    with pytest.raises(DataError, match="checksum mismatch"):
        load_corpus("fakezip")
    assert not (tmp_path / "cache" / "fakezip").exists()
    monkeypatch.setattr(corpora.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(good.getvalue()))
    c = load_corpus("fakezip")
    assert (c.train, c.valid, c.test) == ("train text", "valid text", "test text")


# -- batching -----------------------------------------------------------------------------------
def test_random_windows_are_shifted_seeded_and_resumable():
    tokens = torch.arange(1000)
    a = RandomWindows(tokens, block_size=8, batch_size=4, seed=7)
    x, y = a.next()
    assert x.shape == (4, 8) and torch.equal(y, x + 1)
    state = a.state_dict()
    expected = [a.next() for _ in range(3)]
    b = RandomWindows(tokens, 8, 4, seed=123)
    b.load_state_dict(state)
    for (ex, ey), (gx, gy) in zip(expected, (b.next() for _ in range(3))):
        assert torch.equal(ex, gx) and torch.equal(ey, gy)
    assert torch.equal(RandomWindows(tokens, 8, 4, seed=7).next()[0], x)


def test_ranks_split_the_global_batch_of_one_process():
    tokens = torch.arange(500)
    whole = RandomWindows(tokens, 8, 6, seed=1).next()[0]
    parts = [RandomWindows(tokens, 8, 3, seed=1, rank=r, world_size=2).next()[0] for r in range(2)]
    assert torch.equal(torch.cat(parts), whole)


def test_context_longer_than_the_data_is_a_data_error():
    with pytest.raises(DataError, match="has 10 tokens but the context .* is 16"):
        RandomWindows(torch.arange(10), 16, 2, seed=0)
    with pytest.raises(DataError, match="validation split"):
        fixed_eval_batches(torch.arange(10), 16, 2, 1)


def test_sequential_windows_predict_every_token_once():
    tokens = torch.arange(53)
    seen = torch.cat([y.reshape(-1) for _, y in sequential_windows(tokens, 8, 3)])
    assert torch.equal(seen, torch.arange(1, 53))
    capped = torch.cat([y.reshape(-1) for _, y in sequential_windows(tokens, 8, 3, max_tokens=20)])
    assert torch.equal(capped, torch.arange(1, 21))
