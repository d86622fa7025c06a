"""IWSLT14 by name on a small made-up archive with the real file layout (no network: the download
reads a file:// URL through the same fetch as the LM corpora): fairseq's recipe rule by rule,
the splits against sacremoses called directly, trust-on-first-use checksums, atomic preparation."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from probattn.errors import ConfigError, DataError
from probattn.nmt import iwslt14
from probattn.nmt.corpus import load_parallel
from probattn.nmt.iwslt14 import clean, seg_lines, train_lines

N_SENTENCES = 50  # 50 good pairs + the ones the clean rule drops: valid = kept lines 23 and 46


def good_pair(i: int) -> tuple[str, str]:
    return f"Der Satz Nummer {i} steht hier, oder?", f"Sentence number {i} is here, isn't it?"


def train_file(lang: str, extra: str = "") -> str:
    """A talk's header lines, made-up sentences and the pairs the clean rule must drop, in order."""
    de = lang == "de"
    lines = ["<url>http://www.ted.com/talks/made_up_talk.html</url>",
             "<keywords>talks, water, science</keywords>",
             "<speaker>Erika Muster</speaker>",  # the script keeps this one (it greps out only three)
             "<talkid>42</talkid>",
             "<title>Erika Muster: Wasser</title>" if de else "<title>Erika Muster: Water</title>",
             "<description>Ein Vortrag über Wasser.</description>" if de else
             "<description>A talk about water.</description>"]
    for i in range(N_SENTENCES):
        lines.append(good_pair(i)[0 if de else 1])
        if i == 5:  # empty on one side
            lines.append("" if de else "Nothing on the other side.")
        if i == 10:  # ratio 4 / 2 = 2 > 1.5
            lines.append("Ja ja ja ja" if de else "Yes yes")
        if i == 15:  # 176 tokens on one side
            lines.append(" ".join(["wort"] * 176) if de else " ".join(["word"] * 170))
    return "\n".join(lines) + "\n" + extra


TEST_SEGS = {name: [(f"Test {name} Satz {k} hier.", f"Test {name} sentence {k}’s end.") for k in range(1, 3 + j)]
             for j, name in enumerate(iwslt14.TEST_SETS)}


def xml_file(name: str, lang: str) -> str:
    segs = [s[0 if lang == "de" else 1] for s in TEST_SEGS[name]]
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<mteval>\n"
            f"<refset setid=\"{name}\" srclang=\"german\" trglang=\"english\">\n<doc docid=\"1\" genre=\"lectures\">\n"
            "<url>http://www.ted.com/talks/made_up.html</url>\n<talkid>7</talkid>\n"
            + "".join(f"<seg id=\"{k}\"> {s} </seg>\n" for k, s in enumerate(segs, 1))
            + "</doc>\n</refset>\n</mteval>\n")


def make_archive(path, extra: str = "", skip: str | None = None):
    files = {f"train.tags.de-en.{lang}": train_file(lang, extra) for lang in ("de", "en")}
    files.update({f"{name}.de-en.{lang}.xml": xml_file(name, lang) for name in iwslt14.TEST_SETS
                  for lang in ("de", "en")})
    files["logo.png"] = b"\x89PNG\r\n\x1a\n\xff"  # another file in the archive: not read
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            if name == skip:
                continue
            data = text if isinstance(text, bytes) else text.encode("utf-8")
            info = tarfile.TarInfo(f"de-en/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def site(tmp_path, monkeypatch):
    """An empty cache and data path, and the download URL pointing at a local archive."""
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBATTN_DATA", raising=False)
    archive = make_archive(tmp_path / "de-en.tgz")
    monkeypatch.setattr(iwslt14, "URLS", (archive.as_uri(),))
    return tmp_path, archive, tmp_path / "cache" / "iwslt14"


def moses(lines, lang):
    """sacremoses as it is (the made-up lines end in no non-breaking prefix, where probattn adds
    Moses' final-dot rule: test_tokenization_matches_tokenizer_perl)."""
    from sacremoses import MosesTokenizer

    tok = MosesTokenizer(lang=lang)
    return [tok.tokenize(line, escape=True, return_str=True).lower() for line in lines]


# -- the recipe's rules, without sacremoses ------------------------------------------------------
def test_train_lines_drop_the_scripts_metadata_and_strip_tags():
    lines = train_lines(train_file("en"))
    assert lines[:3] == ["<speaker>Erika Muster</speaker>", "Erika Muster: Water", "A talk about water."]
    assert not any(tag in line for line in lines for tag in ("<url>", "<talkid>", "<keywords>", "<title>"))
    assert train_lines("a <url>x</url> b\n<title>T</title> and <description>D</description>\n") == ["T and D"]


def test_seg_lines_keep_only_segments_and_straighten_apostrophes():
    xml = xml_file("IWSLT14.TED.tst2010", "en")
    assert seg_lines(xml) == [s[1].replace("’", "'") for s in TEST_SEGS["IWSLT14.TED.tst2010"]]
    assert seg_lines('  <seg id="12">\tA b </seg>  \n<seg id=3>no</seg>\n') == ["  A b", "<seg id=3>no"]


def test_clean_rule_lengths_ratio_and_whitespace():
    w = lambda n, t="w": " ".join([t] * n)  # noqa: E731
    pairs = [(w(175), w(175)), (w(176), w(175)), (w(2), w(3)), (w(3), w(2)), (w(3), w(5)), (w(5), w(3)),
             ("", "a"), ("a", "   "), ("  a \t b  ", "c  d"), ("x" * 1001, "y"), ("x" * 1000, "y"),
             ("a | b", "c d")]
    assert clean(pairs) == [(w(175), w(175)), (w(2), w(3)), (w(3), w(2)), ("a b", "c d"), ("x" * 1000, "y"),
                            ("a b", "c d")]


# made-up lines and what Moses' tokenizer.perl (master, as fairseq's script clones it) piped into
# lowercase.perl printed for them, recorded once beside the checkout (Perl is not a test dependency)
PERL_GOLDEN = {
    "de": [("Das ist Nummer 1.", "das ist nummer 1 ."),
           ("Wir sehen uns am 3. Mai, usw.", "wir sehen uns am 3. mai , usw ."),
           ('Er sagte: "Die U.S.A. sind groß."', "er sagte : &quot; die u.s.a. sind groß . &quot;"),
           ("Um 3:30 Uhr kostet es 1.000,50 € (ca. 5%).", "um 3 : 30 uhr kostet es 1.000,50 € ( ca. 5 % ) ."),
           ("Rock 'n' Roll in den '90ern, z.B.", "rock &apos; n &apos; roll in den &apos; 90ern , z.b .")],
    "en": [("It's Mr. Smith's car, isn't it?", "it &apos;s mr. smith &apos;s car , isn &apos;t it ?"),
           ("We'd pay $1,000.50 -- e.g. for the U.S.A.", "we &apos;d pay $ 1,000.50 -- e.g. for the u.s.a ."),
           ("A well-known e-mail & a | pipe [sic] <b>...",
            "a well-known e-mail &amp; a &#124; pipe &#91; sic &#93; &lt; b &gt; ..."),
           ("Ask No. 5 about St.", "ask no. 5 about st .")],
}


@pytest.mark.parametrize("lang", ["de", "en"])
def test_tokenization_matches_tokenizer_perl(lang):
    """sacremoses plus Moses' 2018 final-dot rule (``Nummer 1.``, ``usw.``, ``St.`` at the end)."""
    pytest.importorskip("sacremoses")
    lines, perl = zip(*PERL_GOLDEN[lang])
    assert [t.lower() for t in iwslt14.tokenize(list(lines), lang)] == list(perl)
    assert iwslt14.tokenize(["", "  "], lang) == ["", "  "]  # blank lines pass through, as in Perl


def test_a_bad_digest_and_a_bad_archive_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="64 hexadecimal"):
        iwslt14.check_digest("abc")
    assert iwslt14.check_digest(" " + "AB" * 32 + "\n") == "ab" * 32
    with pytest.raises(DataError, match="not a readable .tgz"):
        iwslt14.archive_texts(b"not an archive")


def test_no_download_and_no_folder_is_one_clear_error(tmp_path, monkeypatch, capsys):
    from probattn.cli import main

    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBATTN_DATA", raising=False)
    with pytest.raises(DataError, match="corpus 'iwslt14' not found.*downloads are off"):
        load_parallel("iwslt14", data_dirs=(str(tmp_path),), download=False)
    code = main(["train-nmt", "--preset", "smoke", "--data", "iwslt14", "--no-download", "--data-dir",
                 str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code != 0 and len(err) == 1 and err[0].startswith("probattn: error: corpus 'iwslt14' not found"), err
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


# -- download, prepare, find ---------------------------------------------------------------------
def expected_splits():
    """The splits built from what each made-up line is, not from the rule: sacremoses directly."""
    de, en = zip(*[good_pair(i) for i in range(N_SENTENCES)])
    head_de = ["<speaker>Erika Muster</speaker>", "Erika Muster: Wasser", "Ein Vortrag über Wasser."]
    head_en = ["<speaker>Erika Muster</speaker>", "Erika Muster: Water", "A talk about water."]
    kept = list(zip(moses(head_de + list(de), "de"), moses(head_en + list(en), "en")))
    valid = [kept[22], kept[45]]
    train = [p for n, p in enumerate(kept, 1) if n % 23]
    test = []
    for name in iwslt14.TEST_SETS:
        segs = TEST_SEGS[name]
        test += zip(moses([s for s, _ in segs], "de"), moses([t.replace("’", "'") for _, t in segs], "en"))
    return train, valid, test


def test_download_prepare_record_and_find_again(site, capsys):
    pytest.importorskip("sacremoses")
    tmp_path, archive, home = site
    corpus = load_parallel("iwslt14")
    train, valid, test = expected_splits()
    assert corpus.train == train and corpus.valid == valid and corpus.test == test
    assert len(corpus.train) == N_SENTENCES + 3 - 2 and corpus.test[-1][1].endswith("&apos;s end .")
    assert corpus.source == str(home / "iwslt14.tokenized.de-en")
    assert sorted(p.name for p in home.iterdir()) == ["SOURCE.json", "de-en.tgz", "iwslt14.tokenized.de-en"]
    record = json.loads((home / "SOURCE.json").read_text())
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert record["url"] == archive.as_uri() and record["sha256"] == digest and not record["pinned"]
    assert record["bytes"] == archive.stat().st_size and record["recipe_version"] == iwslt14.RECIPE_VERSION
    assert record["date"].endswith("Z") and "trust on first use" in corpus.notes[-1]
    assert "downloading" in capsys.readouterr().err
    # found through the data path afterwards: no download (the URL is gone), either direction
    archive.unlink()
    flipped = load_parallel("iwslt14", "en", "de", download=False)
    assert flipped.train == [(t, s) for s, t in train] and "downloading" not in capsys.readouterr().err
    # the same through the training pipeline's loader and the data config's field
    from probattn.nmt.config import NMTDataConfig
    from probattn.nmt.task import load_corpus_for

    assert load_corpus_for(NMTDataConfig(corpus="iwslt14", download=False, iwslt14_sha256=digest)).test == test
    with pytest.raises(DataError, match=f"prepared from an archive with sha256 {digest}, not the given"):
        load_parallel("iwslt14", sha256="0" * 64)


def test_a_changed_archive_is_refused(site):
    pytest.importorskip("sacremoses")
    tmp_path, archive, home = site
    load_parallel("iwslt14")
    prepared = home / "iwslt14.tokenized.de-en"
    kept = (home / "de-en.tgz").read_bytes()
    # a later preparation from a different download: refused against the recorded digest
    import shutil

    shutil.rmtree(prepared)
    (home / "de-en.tgz").unlink()
    make_archive(archive, extra="Ein neuer Satz.\n")
    with pytest.raises(DataError, match="checksum mismatch: file:.* has sha256 .*the digest recorded in"):
        load_parallel("iwslt14")
    assert not prepared.exists() and not (home / "de-en.tgz").exists()
    # the kept archive changed on disk: refused too
    (home / "de-en.tgz").write_bytes(archive.read_bytes())
    with pytest.raises(DataError, match="checksum mismatch: .*de-en.tgz has sha256"):
        load_parallel("iwslt14")
    # the original bytes prepare again without the network
    (home / "de-en.tgz").write_bytes(kept)
    archive.unlink()
    assert load_parallel("iwslt14").train == expected_splits()[0]


def test_a_given_digest_is_verified_and_recorded_as_pinned(site):
    pytest.importorskip("sacremoses")
    tmp_path, archive, home = site
    with pytest.raises(DataError, match="checksum mismatch"):
        load_parallel("iwslt14", sha256="0" * 64)
    assert not home.exists()  # a refused download leaves nothing in the cache
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    corpus = load_parallel("iwslt14", sha256=digest.upper())
    assert json.loads((home / "SOURCE.json").read_text())["pinned"] and "the digest given" in corpus.notes[-1]


def test_a_folder_prepared_elsewhere_is_used_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBATTN_DATA", raising=False)
    folder = tmp_path / "data" / "iwslt14.tokenized.de-en"
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (folder / f"{split}.de").write_text("das ist gut .\n", encoding="utf-8")
        (folder / f"{split}.en").write_text("that is good .\n", encoding="utf-8")
    corpus = load_parallel("iwslt14", data_dirs=(str(tmp_path / "data"),), sha256="1" * 64)
    assert corpus.test == [("das ist gut .", "that is good .")] and "prepared outside probattn" in corpus.notes[-1]
    assert not (tmp_path / "cache").exists()


def test_an_interrupted_preparation_leaves_no_folder(site, monkeypatch):
    pytest.importorskip("sacremoses")
    tmp_path, archive, home = site
    real = iwslt14.atomic_write_text
    written = []

    def stop_after_two(path, text):
        if path.parent.name.endswith(".tmp") and len(written) == 2:
            raise KeyboardInterrupt
        written.append(path)
        real(path, text)

    monkeypatch.setattr(iwslt14, "atomic_write_text", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        load_parallel("iwslt14")
    assert sorted(p.name for p in home.iterdir()) == ["SOURCE.json", "de-en.tgz"]  # no folder, no temporary
    monkeypatch.setattr(iwslt14, "atomic_write_text", real)
    archive.unlink()  # the kept, verified archive is enough to finish
    assert load_parallel("iwslt14").valid == expected_splits()[1]


def test_an_archive_missing_a_file_or_misaligned_is_refused(site):
    pytest.importorskip("sacremoses")
    tmp_path, archive, home = site
    make_archive(archive, skip="IWSLT14.TEDX.dev2012.de-en.en.xml")
    with pytest.raises(DataError, match="archive has no IWSLT14.TEDX.dev2012.de-en.en.xml"):
        load_parallel("iwslt14")
    assert not (home / "iwslt14.tokenized.de-en").exists()
    texts = iwslt14.archive_texts(make_archive(tmp_path / "x.tgz").read_bytes())
    texts["train.tags.de-en.en"] += "One more English line.\n"
    with pytest.raises(DataError, match="do not align: 56 German and 57 English"):
        iwslt14.prepare_texts(texts)


def test_an_archive_copied_into_the_cache_is_prepared_offline(site):
    pytest.importorskip("sacremoses")
    tmp_path, archive, home = site
    home.mkdir(parents=True)
    (home / "de-en.tgz").write_bytes(archive.read_bytes())
    archive.unlink()  # no download possible
    assert load_parallel("iwslt14").test == expected_splits()[2]
    record = json.loads((home / "SOURCE.json").read_text())
    assert record["url"] == str(home / "de-en.tgz") and record["sha256"] == hashlib.sha256(
        (home / "de-en.tgz").read_bytes()).hexdigest()


def test_an_unreachable_download_says_where_the_archive_can_go(site):
    tmp_path, archive, home = site
    archive.unlink()
    with pytest.raises(DataError, match=r"could not download .*; or put fairseq's de-en.tgz at .*iwslt14/de-en.tgz$"):
        load_parallel("iwslt14")
    assert not home.exists()
