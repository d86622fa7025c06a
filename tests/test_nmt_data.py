"""Parallel data: the Ding line format, the deterministic hash split, folder corpora and their
errors, the subword tokenizer's round trip and persistence, batches and the smoothed loss."""

from __future__ import annotations

import math

import pytest
import torch

from probattn.errors import DataError
from probattn.nmt import corpus as corpus_mod
from probattn.nmt.corpus import load_parallel, read_parallel
from probattn.nmt.ding import clean, parse, parse_line
from probattn.nmt.subword import BOS, EOS, PAD, SubwordTokenizer
from probattn.nmt.task import LabelSmoothedCE, LengthWindows, collate

from .conftest import needs

# Ding-format lines written for the test (the format, not the dictionary's text)
LINES = """# comment :: line
Haus {n} | Häuser {pl} | Das Haus ist groß. :: house | houses | The house is big.
Hund {m}; Köter {m} [pej.] | Der Hund schläft. :: dog; cur | The dog sleeps.
alt {adj} | ein alter Mann :: old; aged | an old man
kaputt :: broken | the extra part
etw. tun … :: to do sth. …
"""


def test_parse_line_pairs_sub_entries_and_alternatives():
    pairs = parse_line(LINES.splitlines()[1])
    assert [(p.de, p.en, p.sentence) for p in pairs] == [
        ("Haus", "house", False), ("Häuser", "houses", False), ("Das Haus ist groß.", "The house is big.", True)]
    # alternatives pair one-to-one when both sides list as many; else the first of each
    assert [(p.de, p.en) for p in parse_line(LINES.splitlines()[2])] == [
        ("Hund", "dog"), ("Köter", "cur"), ("Der Hund schläft.", "The dog sleeps.")]
    assert [(p.de, p.en) for p in parse_line(LINES.splitlines()[3])] == [
        ("alt", "old"), ("ein alter Mann", "an old man")]
    assert parse_line(LINES.splitlines()[4]) == []  # sides with different sub-entry counts
    assert parse_line(LINES.splitlines()[5]) == []  # placeholders
    assert parse_line("# Version :: 1") == [] and parse_line("") == []
    assert clean("Abhilfe {f} (gegen etw.) [Schw.]") == "Abhilfe"
    assert len(parse(LINES + LINES)) == len(parse(LINES))  # duplicates once


def test_ding_split_is_deterministic_and_disjoint(tmp_path):
    rows = [f"Wort{i} {{n}} | Satz Nummer {i} ist hier. :: word{i} | Sentence number {i} is here." for i in range(300)]
    (tmp_path / "trans").mkdir()
    (tmp_path / "trans" / "de-en").write_text("\n".join(rows) + "\n", encoding="utf-8")
    a = load_parallel("ding", "de", "en", (str(tmp_path),))
    b = load_parallel("ding", "de", "en", (str(tmp_path),))
    assert a.sizes() == b.sizes() and a.test == b.test
    assert a.sizes()["test"] > 0 and a.sizes()["valid"] > 0
    held = {en for _, en in a.valid + a.test}
    assert not held & {en for _, en in a.train}
    assert all(en.endswith(".") for _, en in a.valid + a.test)  # held-out splits are sentences only
    no_phrases = load_parallel("ding", "de", "en", (str(tmp_path),), phrases=False)
    assert len(no_phrases.train) == len(a.train) - 300
    # the word headwords are one word per side: a two-word minimum leaves the sentences only
    multiword = load_parallel("ding", "de", "en", (str(tmp_path),), phrase_min_words=2)
    assert multiword.train == no_phrases.train
    flipped = load_parallel("ding", "en", "de", (str(tmp_path),))
    assert flipped.test == [(t, s) for s, t in a.test]
    short = load_parallel("ding", "de", "en", (str(tmp_path),), max_words=1)
    assert short.valid == [] and all(len(s.split()) == 1 for s, _ in short.train)


def test_folder_corpus_and_its_errors(tmp_path):
    for split in ("train", "valid"):
        (tmp_path / f"{split}.de").write_text("eins\nzwei\n", encoding="utf-8")
        (tmp_path / f"{split}.en").write_text("one\ntwo\n", encoding="utf-8")
    c = load_parallel(str(tmp_path), "en", "de")
    assert c.train == [("one", "eins"), ("two", "zwei")] and c.test == []
    (tmp_path / "valid.en").write_text("one\n", encoding="utf-8")
    with pytest.raises(DataError, match="has 2 lines but"):
        load_parallel(str(tmp_path))
    (tmp_path / "valid.en").write_text("one\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty line 2"):
        read_parallel(tmp_path / "valid.de", tmp_path / "valid.en")
    with pytest.raises(DataError, match="unknown parallel corpus"):
        load_parallel("europarl")
    with pytest.raises(DataError, match="unknown language pair"):
        load_parallel("ding", "de", "fr")
    with pytest.raises(DataError, match="not found"):
        load_parallel("iwslt14", data_dirs=(str(tmp_path),), download=False)


def test_missing_ding_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "DING_SYSTEM_FILE", tmp_path / "absent")
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBATTN_DATA", raising=False)
    with pytest.raises(DataError, match="apt-get install trans-de-en"):
        load_parallel("ding", data_dirs=(str(tmp_path),))


@needs("tokenizers", "nmt")
@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_tokenizer_round_trip_and_persistence(kind):
    texts = ["Das Haus ist groß.", "The house is big.", "Der Hund schläft.", "The dog sleeps."] * 5
    tok = SubwordTokenizer.train(texts, vocab_size=60, kind=kind)
    assert [tok._tok.id_to_token(i) for i in (PAD, BOS, EOS)] == ["<pad>", "<s>", "</s>"]
    for t in texts[:4]:
        assert tok.decode(tok.encode(t)) == t
    again = SubwordTokenizer.from_dict(tok.to_dict())
    assert again.encode("Das Haus schläft.") == tok.encode("Das Haus schläft.")
    assert again.fingerprint() == tok.fingerprint()
    if kind == "char":
        assert all(len(tok._tok.id_to_token(i)) == 1 for i in tok.encode("Haus"))


def test_collate_and_length_windows():
    (src, tgt_in), tgt_out = collate([([5, 6, 7], [8]), ([5], [9, 10])])
    assert src.tolist() == [[5, 6, 7, EOS], [5, EOS, PAD, PAD]]
    assert tgt_in.tolist() == [[BOS, 8, PAD], [BOS, 9, 10]]
    assert tgt_out.tolist() == [[8, EOS, PAD], [9, 10, EOS]]
    pairs = [([4] * n, [5] * (n % 3 + 1)) for n in range(1, 40)]
    a, b = LengthWindows(pairs, 4, seed=0), LengthWindows(pairs, 4, seed=0)
    first = [a.next() for _ in range(3)]
    state = a.generator.get_state()
    nxt = a.next()
    b.generator.set_state(state)
    assert torch.equal(b.next()[1], nxt[1])  # resumable from the generator state
    assert all(x[0][0].shape[1] - (x[0][0] != PAD).sum(1).min() <= 4 for x in first)  # length-homogeneous
    # equal lengths come in a seeded random order, not the corpus order (neighbouring entries)
    same_length = [([4, 4], [i]) for i in range(200)]
    order = [t[0] for _, t in LengthWindows(same_length, 4, seed=0).pairs]
    assert sorted(order) == list(range(200)) and order != list(range(200))
    assert order == [t[0] for _, t in LengthWindows(same_length, 4, seed=0).pairs]


def test_ranks_split_the_global_batch_and_share_its_normaliser():
    pairs = [([4] * (n % 9 + 1), [5] * (n % 5 + 1)) for n in range(60)]
    (src, tgt_in, norm), tgt_out = LengthWindows(pairs, 6, seed=3).next()
    parts = [LengthWindows(pairs, 3, seed=3, rank=r, world_size=2).next() for r in range(2)]
    rows = [[row[row != PAD].tolist() for row in p[1]] for p in parts]
    assert rows[0] + rows[1] == [row[row != PAD].tolist() for row in tgt_out]  # the same six pairs
    assert float(norm) == int((tgt_out != PAD).sum())  # one process: its own target tokens
    assert all(float(p[0][2]) == float(norm) / 2 for p in parts)  # each rank: half the global count
    # so the ranks' summed token losses over the shared normaliser average to the global mean
    with pytest.raises(DataError, match="for a batch of 8"):
        LengthWindows(pairs[:7], 4, seed=0, world_size=2)


def test_label_smoothed_ce_against_a_direct_formula():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    targets = torch.tensor([[4, 5, PAD], [6, EOS, 3]])

    class Fixed(torch.nn.Module):
        def forward(self, src, tgt):
            return logits, None

    eps = 0.1
    loss, parts = LabelSmoothedCE(label_smoothing=eps)(Fixed(), (None, None), targets)
    rows = [(b, t) for b in range(2) for t in range(3) if targets[b, t] != PAD]
    expected = 0.0
    for b, t in rows:
        logp = torch.log_softmax(logits[b, t], -1)
        q = torch.full((7,), eps / 7)
        q[targets[b, t]] += 1 - eps
        expected += float(-(q * logp).sum())
    assert float(loss) == pytest.approx(expected / len(rows), rel=1e-6)
    nll = sum(-float(torch.log_softmax(logits[b, t], -1)[targets[b, t]]) for b, t in rows) / len(rows)
    assert float(parts["nll"]) == pytest.approx(nll, rel=1e-6)
    assert math.isfinite(float(LabelSmoothedCE().eval_metrics(Fixed(), (None, None), targets)["ppl"]))
    # a named normaliser (a data-parallel rank's share of the global batch) replaces the count
    shared, _ = LabelSmoothedCE(label_smoothing=eps)(Fixed(), (None, None, torch.tensor(10.0)), targets)
    assert float(shared) == pytest.approx(expected / 10, rel=1e-6)
